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

class RequestType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REQUEST_TYPE_UNSPECIFIED: _ClassVar[RequestType]
    INITIAL: _ClassVar[RequestType]
    UPDATE: _ClassVar[RequestType]
    TERMINATE: _ClassVar[RequestType]
    EVENT: _ClassVar[RequestType]

class EventAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_ACTION_UNSPECIFIED: _ClassVar[EventAction]
    DIRECT_DEBIT: _ClassVar[EventAction]
    REFUND: _ClassVar[EventAction]
    CHECK_BALANCE: _ClassVar[EventAction]
    PRICE_ENQUIRY: _ClassVar[EventAction]
REQUEST_TYPE_UNSPECIFIED: RequestType
INITIAL: RequestType
UPDATE: RequestType
TERMINATE: RequestType
EVENT: RequestType
EVENT_ACTION_UNSPECIFIED: EventAction
DIRECT_DEBIT: EventAction
REFUND: EventAction
CHECK_BALANCE: EventAction
PRICE_ENQUIRY: EventAction

class ServiceUnit(_message.Message):
    __slots__ = ("rating_group", "service", "destination", "requested", "used")
    RATING_GROUP_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_FIELD_NUMBER: _ClassVar[int]
    USED_FIELD_NUMBER: _ClassVar[int]
    rating_group: int
    service: str
    destination: str
    requested: _common_pb2.Units
    used: _common_pb2.Units
    def __init__(self, rating_group: _Optional[int] = ..., service: _Optional[str] = ..., destination: _Optional[str] = ..., requested: _Optional[_Union[_common_pb2.Units, _Mapping]] = ..., used: _Optional[_Union[_common_pb2.Units, _Mapping]] = ...) -> None: ...

class ChargeRequest(_message.Message):
    __slots__ = ("session_id", "request_type", "request_number", "subscriber", "event_time", "origin", "event_action", "units")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_TYPE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_NUMBER_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBER_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    EVENT_ACTION_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    request_type: RequestType
    request_number: int
    subscriber: str
    event_time: _timestamp_pb2.Timestamp
    origin: str
    event_action: EventAction
    units: _containers.RepeatedCompositeFieldContainer[ServiceUnit]
    def __init__(self, session_id: _Optional[str] = ..., request_type: _Optional[_Union[RequestType, str]] = ..., request_number: _Optional[int] = ..., subscriber: _Optional[str] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., origin: _Optional[str] = ..., event_action: _Optional[_Union[EventAction, str]] = ..., units: _Optional[_Iterable[_Union[ServiceUnit, _Mapping]]] = ...) -> None: ...

class ServiceGrant(_message.Message):
    __slots__ = ("rating_group", "result_code", "granted", "validity_time_s", "final_unit_action", "threshold")
    class FinalUnitAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        NONE: _ClassVar[ServiceGrant.FinalUnitAction]
        TERMINATE: _ClassVar[ServiceGrant.FinalUnitAction]
        REDIRECT: _ClassVar[ServiceGrant.FinalUnitAction]
        RESTRICT: _ClassVar[ServiceGrant.FinalUnitAction]
    NONE: ServiceGrant.FinalUnitAction
    TERMINATE: ServiceGrant.FinalUnitAction
    REDIRECT: ServiceGrant.FinalUnitAction
    RESTRICT: ServiceGrant.FinalUnitAction
    RATING_GROUP_FIELD_NUMBER: _ClassVar[int]
    RESULT_CODE_FIELD_NUMBER: _ClassVar[int]
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    VALIDITY_TIME_S_FIELD_NUMBER: _ClassVar[int]
    FINAL_UNIT_ACTION_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    rating_group: int
    result_code: int
    granted: _common_pb2.Units
    validity_time_s: int
    final_unit_action: ServiceGrant.FinalUnitAction
    threshold: _common_pb2.Units
    def __init__(self, rating_group: _Optional[int] = ..., result_code: _Optional[int] = ..., granted: _Optional[_Union[_common_pb2.Units, _Mapping]] = ..., validity_time_s: _Optional[int] = ..., final_unit_action: _Optional[_Union[ServiceGrant.FinalUnitAction, str]] = ..., threshold: _Optional[_Union[_common_pb2.Units, _Mapping]] = ...) -> None: ...

class ChargeResponse(_message.Message):
    __slots__ = ("result_code", "session_id", "request_number", "grants", "charged", "available", "error_message")
    RESULT_CODE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_NUMBER_FIELD_NUMBER: _ClassVar[int]
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    CHARGED_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    result_code: int
    session_id: str
    request_number: int
    grants: _containers.RepeatedCompositeFieldContainer[ServiceGrant]
    charged: str
    available: str
    error_message: str
    def __init__(self, result_code: _Optional[int] = ..., session_id: _Optional[str] = ..., request_number: _Optional[int] = ..., grants: _Optional[_Iterable[_Union[ServiceGrant, _Mapping]]] = ..., charged: _Optional[str] = ..., available: _Optional[str] = ..., error_message: _Optional[str] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("accounts",)
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    accounts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, accounts: _Optional[_Iterable[str]] = ...) -> None: ...

class Notification(_message.Message):
    __slots__ = ("kind", "account", "time", "detail", "level")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[Notification.Kind]
        BALANCE_LOW: _ClassVar[Notification.Kind]
        BUNDLE_THRESHOLD: _ClassVar[Notification.Kind]
        BUNDLE_EXHAUSTED: _ClassVar[Notification.Kind]
        STATUS_CHANGED: _ClassVar[Notification.Kind]
        EXPIRED: _ClassVar[Notification.Kind]
        REAUTHORIZE: _ClassVar[Notification.Kind]
    KIND_UNSPECIFIED: Notification.Kind
    BALANCE_LOW: Notification.Kind
    BUNDLE_THRESHOLD: Notification.Kind
    BUNDLE_EXHAUSTED: Notification.Kind
    STATUS_CHANGED: Notification.Kind
    EXPIRED: Notification.Kind
    REAUTHORIZE: Notification.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    kind: Notification.Kind
    account: str
    time: _timestamp_pb2.Timestamp
    detail: str
    level: _common_pb2.Units
    def __init__(self, kind: _Optional[_Union[Notification.Kind, str]] = ..., account: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., detail: _Optional[str] = ..., level: _Optional[_Union[_common_pb2.Units, _Mapping]] = ...) -> None: ...
