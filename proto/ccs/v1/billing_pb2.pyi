import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BillLine(_message.Message):
    __slots__ = ("kind", "description", "amount", "account")
    KIND_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    kind: str
    description: str
    amount: str
    account: str
    def __init__(self, kind: _Optional[str] = ..., description: _Optional[str] = ..., amount: _Optional[str] = ..., account: _Optional[str] = ...) -> None: ...

class Bill(_message.Message):
    __slots__ = ("id", "account", "cycle", "status", "lines", "total", "amount_due", "due_date", "created", "type", "currency", "period_start", "period_end", "subtotal", "account_discount", "tax")
    ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    CYCLE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_DUE_FIELD_NUMBER: _ClassVar[int]
    DUE_DATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    SUBTOTAL_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_DISCOUNT_FIELD_NUMBER: _ClassVar[int]
    TAX_FIELD_NUMBER: _ClassVar[int]
    id: str
    account: str
    cycle: str
    status: str
    lines: _containers.RepeatedCompositeFieldContainer[BillLine]
    total: str
    amount_due: str
    due_date: str
    created: _timestamp_pb2.Timestamp
    type: str
    currency: str
    period_start: str
    period_end: str
    subtotal: str
    account_discount: str
    tax: str
    def __init__(self, id: _Optional[str] = ..., account: _Optional[str] = ..., cycle: _Optional[str] = ..., status: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[BillLine, _Mapping]]] = ..., total: _Optional[str] = ..., amount_due: _Optional[str] = ..., due_date: _Optional[str] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., type: _Optional[str] = ..., currency: _Optional[str] = ..., period_start: _Optional[str] = ..., period_end: _Optional[str] = ..., subtotal: _Optional[str] = ..., account_discount: _Optional[str] = ..., tax: _Optional[str] = ...) -> None: ...

class ListBillsRequest(_message.Message):
    __slots__ = ("account", "cycle")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    CYCLE_FIELD_NUMBER: _ClassVar[int]
    account: str
    cycle: str
    def __init__(self, account: _Optional[str] = ..., cycle: _Optional[str] = ...) -> None: ...

class ListBillsReply(_message.Message):
    __slots__ = ("bills",)
    BILLS_FIELD_NUMBER: _ClassVar[int]
    bills: _containers.RepeatedCompositeFieldContainer[Bill]
    def __init__(self, bills: _Optional[_Iterable[_Union[Bill, _Mapping]]] = ...) -> None: ...

class GetBillRequest(_message.Message):
    __slots__ = ("account", "cycle")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    CYCLE_FIELD_NUMBER: _ClassVar[int]
    account: str
    cycle: str
    def __init__(self, account: _Optional[str] = ..., cycle: _Optional[str] = ...) -> None: ...

class RecordPaymentRequest(_message.Message):
    __slots__ = ("op_id", "account", "amount", "paid_on")
    OP_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    PAID_ON_FIELD_NUMBER: _ClassVar[int]
    op_id: str
    account: str
    amount: str
    paid_on: str
    def __init__(self, op_id: _Optional[str] = ..., account: _Optional[str] = ..., amount: _Optional[str] = ..., paid_on: _Optional[str] = ...) -> None: ...

class PaymentReply(_message.Message):
    __slots__ = ("applied", "unallocated", "allocations")
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    UNALLOCATED_FIELD_NUMBER: _ClassVar[int]
    ALLOCATIONS_FIELD_NUMBER: _ClassVar[int]
    applied: bool
    unallocated: str
    allocations: _containers.RepeatedCompositeFieldContainer[Allocation]
    def __init__(self, applied: _Optional[bool] = ..., unallocated: _Optional[str] = ..., allocations: _Optional[_Iterable[_Union[Allocation, _Mapping]]] = ...) -> None: ...

class Allocation(_message.Message):
    __slots__ = ("bill_id", "amount")
    BILL_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    bill_id: str
    amount: str
    def __init__(self, bill_id: _Optional[str] = ..., amount: _Optional[str] = ...) -> None: ...
