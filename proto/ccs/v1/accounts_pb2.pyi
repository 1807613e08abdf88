import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from proto.ccs.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AccountStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACCOUNT_STATUS_UNSPECIFIED: _ClassVar[AccountStatus]
    ACTIVE: _ClassVar[AccountStatus]
    SUSPENDED: _ClassVar[AccountStatus]
    TERMINATED: _ClassVar[AccountStatus]

class PaymentType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PAYMENT_TYPE_UNSPECIFIED: _ClassVar[PaymentType]
    PREPAID: _ClassVar[PaymentType]
    POSTPAID: _ClassVar[PaymentType]
ACCOUNT_STATUS_UNSPECIFIED: AccountStatus
ACTIVE: AccountStatus
SUSPENDED: AccountStatus
TERMINATED: AccountStatus
PAYMENT_TYPE_UNSPECIFIED: PaymentType
PREPAID: PaymentType
POSTPAID: PaymentType

class Bucket(_message.Message):
    __slots__ = ("id", "kind", "service", "destinations", "remaining", "initial", "valid_from", "valid_to", "priority", "source", "reserved")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    DESTINATIONS_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    INITIAL_FIELD_NUMBER: _ClassVar[int]
    VALID_FROM_FIELD_NUMBER: _ClassVar[int]
    VALID_TO_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: str
    service: str
    destinations: _containers.RepeatedScalarFieldContainer[str]
    remaining: _common_pb2.Units
    initial: _common_pb2.Units
    valid_from: _timestamp_pb2.Timestamp
    valid_to: _timestamp_pb2.Timestamp
    priority: int
    source: str
    reserved: _common_pb2.Units
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[str] = ..., service: _Optional[str] = ..., destinations: _Optional[_Iterable[str]] = ..., remaining: _Optional[_Union[_common_pb2.Units, _Mapping]] = ..., initial: _Optional[_Union[_common_pb2.Units, _Mapping]] = ..., valid_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., valid_to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., priority: _Optional[int] = ..., source: _Optional[str] = ..., reserved: _Optional[_Union[_common_pb2.Units, _Mapping]] = ...) -> None: ...

class Reservation(_message.Message):
    __slots__ = ("session_id", "money", "units", "expires_at")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    MONEY_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    money: str
    units: _common_pb2.Units
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, session_id: _Optional[str] = ..., money: _Optional[str] = ..., units: _Optional[_Union[_common_pb2.Units, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Subscription(_message.Message):
    __slots__ = ("offer", "from_date", "to_date")
    OFFER_FIELD_NUMBER: _ClassVar[int]
    FROM_DATE_FIELD_NUMBER: _ClassVar[int]
    TO_DATE_FIELD_NUMBER: _ClassVar[int]
    offer: str
    from_date: str
    to_date: str
    def __init__(self, offer: _Optional[str] = ..., from_date: _Optional[str] = ..., to_date: _Optional[str] = ...) -> None: ...

class Account(_message.Message):
    __slots__ = ("id", "currency", "status", "payment_type", "credit_limit", "unlimited", "balance", "reserved", "available", "bill_cycle_day", "parent", "msisdns", "subscriptions", "buckets", "reservations", "usage_counters")
    class UsageCountersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CREDIT_LIMIT_FIELD_NUMBER: _ClassVar[int]
    UNLIMITED_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    BILL_CYCLE_DAY_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    MSISDNS_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    RESERVATIONS_FIELD_NUMBER: _ClassVar[int]
    USAGE_COUNTERS_FIELD_NUMBER: _ClassVar[int]
    id: str
    currency: str
    status: AccountStatus
    payment_type: PaymentType
    credit_limit: str
    unlimited: bool
    balance: str
    reserved: str
    available: str
    bill_cycle_day: int
    parent: str
    msisdns: _containers.RepeatedScalarFieldContainer[str]
    subscriptions: _containers.RepeatedCompositeFieldContainer[Subscription]
    buckets: _containers.RepeatedCompositeFieldContainer[Bucket]
    reservations: _containers.RepeatedCompositeFieldContainer[Reservation]
    usage_counters: _containers.ScalarMap[str, int]
    def __init__(self, id: _Optional[str] = ..., currency: _Optional[str] = ..., status: _Optional[_Union[AccountStatus, str]] = ..., payment_type: _Optional[_Union[PaymentType, str]] = ..., credit_limit: _Optional[str] = ..., unlimited: _Optional[bool] = ..., balance: _Optional[str] = ..., reserved: _Optional[str] = ..., available: _Optional[str] = ..., bill_cycle_day: _Optional[int] = ..., parent: _Optional[str] = ..., msisdns: _Optional[_Iterable[str]] = ..., subscriptions: _Optional[_Iterable[_Union[Subscription, _Mapping]]] = ..., buckets: _Optional[_Iterable[_Union[Bucket, _Mapping]]] = ..., reservations: _Optional[_Iterable[_Union[Reservation, _Mapping]]] = ..., usage_counters: _Optional[_Mapping[str, int]] = ...) -> None: ...

class AccountReply(_message.Message):
    __slots__ = ("account", "applied", "op_id")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    OP_ID_FIELD_NUMBER: _ClassVar[int]
    account: Account
    applied: bool
    op_id: str
    def __init__(self, account: _Optional[_Union[Account, _Mapping]] = ..., applied: _Optional[bool] = ..., op_id: _Optional[str] = ...) -> None: ...

class CreateAccountRequest(_message.Message):
    __slots__ = ("op_id", "account_id", "payment_type", "credit_limit", "msisdns", "currency", "bill_cycle_day", "parent", "offers")
    OP_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CREDIT_LIMIT_FIELD_NUMBER: _ClassVar[int]
    MSISDNS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    BILL_CYCLE_DAY_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    OFFERS_FIELD_NUMBER: _ClassVar[int]
    op_id: str
    account_id: str
    payment_type: PaymentType
    credit_limit: str
    msisdns: _containers.RepeatedScalarFieldContainer[str]
    currency: str
    bill_cycle_day: int
    parent: str
    offers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, op_id: _Optional[str] = ..., account_id: _Optional[str] = ..., payment_type: _Optional[_Union[PaymentType, str]] = ..., credit_limit: _Optional[str] = ..., msisdns: _Optional[_Iterable[str]] = ..., currency: _Optional[str] = ..., bill_cycle_day: _Optional[int] = ..., parent: _Optional[str] = ..., offers: _Optional[_Iterable[str]] = ...) -> None: ...

class GetAccountRequest(_message.Message):
    __slots__ = ("account_id",)
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    def __init__(self, account_id: _Optional[str] = ...) -> None: ...

class TopUpRequest(_message.Message):
    __slots__ = ("op_id", "account_id", "amount", "currency")
    OP_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    op_id: str
    account_id: str
    amount: str
    currency: str
    def __init__(self, op_id: _Optional[str] = ..., account_id: _Optional[str] = ..., amount: _Optional[str] = ..., currency: _Optional[str] = ...) -> None: ...

class AdjustRequest(_message.Message):
    __slots__ = ("op_id", "account_id", "amount", "reason")
    OP_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    op_id: str
    account_id: str
    amount: str
    reason: str
    def __init__(self, op_id: _Optional[str] = ..., account_id: _Optional[str] = ..., amount: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class SetStatusRequest(_message.Message):
    __slots__ = ("op_id", "account_id", "status", "reason")
    OP_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    op_id: str
    account_id: str
    status: AccountStatus
    reason: str
    def __init__(self, op_id: _Optional[str] = ..., account_id: _Optional[str] = ..., status: _Optional[_Union[AccountStatus, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class ChangePaymentTypeRequest(_message.Message):
    __slots__ = ("op_id", "account_id", "payment_type", "credit_limit")
    OP_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CREDIT_LIMIT_FIELD_NUMBER: _ClassVar[int]
    op_id: str
    account_id: str
    payment_type: PaymentType
    credit_limit: str
    def __init__(self, op_id: _Optional[str] = ..., account_id: _Optional[str] = ..., payment_type: _Optional[_Union[PaymentType, str]] = ..., credit_limit: _Optional[str] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("op_id", "account_id", "offer", "from_date", "to_date")
    OP_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    OFFER_FIELD_NUMBER: _ClassVar[int]
    FROM_DATE_FIELD_NUMBER: _ClassVar[int]
    TO_DATE_FIELD_NUMBER: _ClassVar[int]
    op_id: str
    account_id: str
    offer: str
    from_date: str
    to_date: str
    def __init__(self, op_id: _Optional[str] = ..., account_id: _Optional[str] = ..., offer: _Optional[str] = ..., from_date: _Optional[str] = ..., to_date: _Optional[str] = ...) -> None: ...

class UnsubscribeRequest(_message.Message):
    __slots__ = ("op_id", "account", "offer", "on")
    OP_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    OFFER_FIELD_NUMBER: _ClassVar[int]
    ON_FIELD_NUMBER: _ClassVar[int]
    op_id: str
    account: str
    offer: str
    on: str
    def __init__(self, op_id: _Optional[str] = ..., account: _Optional[str] = ..., offer: _Optional[str] = ..., on: _Optional[str] = ...) -> None: ...

class ListLedgerRequest(_message.Message):
    __slots__ = ("account_id", "limit", "after")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    limit: int
    after: str
    def __init__(self, account_id: _Optional[str] = ..., limit: _Optional[int] = ..., after: _Optional[str] = ...) -> None: ...

class LedgerEntry(_message.Message):
    __slots__ = ("id", "op", "op_id", "time", "fields")
    class FieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    OP_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    op: str
    op_id: str
    time: _timestamp_pb2.Timestamp
    fields: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[str] = ..., op: _Optional[str] = ..., op_id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., fields: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListLedgerReply(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[LedgerEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[LedgerEntry, _Mapping]]] = ...) -> None: ...
