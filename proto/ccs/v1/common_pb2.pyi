from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class Units(_message.Message):
    __slots__ = ("seconds", "bytes", "events", "money")
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    MONEY_FIELD_NUMBER: _ClassVar[int]
    seconds: int
    bytes: int
    events: int
    money: str
    def __init__(self, seconds: _Optional[int] = ..., bytes: _Optional[int] = ..., events: _Optional[int] = ..., money: _Optional[str] = ...) -> None: ...
