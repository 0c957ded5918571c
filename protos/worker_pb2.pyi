from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Tensor(_message.Message):
    __slots__ = ("name", "datatype", "shape", "data", "region_offset", "region_length")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DATATYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    REGION_OFFSET_FIELD_NUMBER: _ClassVar[int]
    REGION_LENGTH_FIELD_NUMBER: _ClassVar[int]
    name: str
    datatype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    region_offset: int
    region_length: int
    def __init__(self, name: _Optional[str] = ..., datatype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ..., region_offset: _Optional[int] = ..., region_length: _Optional[int] = ...) -> None: ...

class LoadModel(_message.Message):
    __slots__ = ("model_key", "onnx")
    MODEL_KEY_FIELD_NUMBER: _ClassVar[int]
    ONNX_FIELD_NUMBER: _ClassVar[int]
    model_key: str
    onnx: bytes
    def __init__(self, model_key: _Optional[str] = ..., onnx: _Optional[bytes] = ...) -> None: ...

class UnloadModel(_message.Message):
    __slots__ = ("model_key",)
    MODEL_KEY_FIELD_NUMBER: _ClassVar[int]
    model_key: str
    def __init__(self, model_key: _Optional[str] = ...) -> None: ...

class InferRequest(_message.Message):
    __slots__ = ("model_key", "inputs", "outputs", "output_region_offset", "output_region_length")
    MODEL_KEY_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_REGION_OFFSET_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_REGION_LENGTH_FIELD_NUMBER: _ClassVar[int]
    model_key: str
    inputs: _containers.RepeatedCompositeFieldContainer[Tensor]
    outputs: _containers.RepeatedScalarFieldContainer[str]
    output_region_offset: int
    output_region_length: int
    def __init__(self, model_key: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., outputs: _Optional[_Iterable[str]] = ..., output_region_offset: _Optional[int] = ..., output_region_length: _Optional[int] = ...) -> None: ...

class Ping(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ToWorker(_message.Message):
    __slots__ = ("id", "load", "infer", "unload", "ping")
    ID_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    INFER_FIELD_NUMBER: _ClassVar[int]
    UNLOAD_FIELD_NUMBER: _ClassVar[int]
    PING_FIELD_NUMBER: _ClassVar[int]
    id: int
    load: LoadModel
    infer: InferRequest
    unload: UnloadModel
    ping: Ping
    def __init__(self, id: _Optional[int] = ..., load: _Optional[_Union[LoadModel, _Mapping]] = ..., infer: _Optional[_Union[InferRequest, _Mapping]] = ..., unload: _Optional[_Union[UnloadModel, _Mapping]] = ..., ping: _Optional[_Union[Ping, _Mapping]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("pid", "onnxruntime_version", "confinement", "input_region_bytes", "output_region_bytes")
    PID_FIELD_NUMBER: _ClassVar[int]
    ONNXRUNTIME_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONFINEMENT_FIELD_NUMBER: _ClassVar[int]
    INPUT_REGION_BYTES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_REGION_BYTES_FIELD_NUMBER: _ClassVar[int]
    pid: int
    onnxruntime_version: str
    confinement: _containers.RepeatedScalarFieldContainer[str]
    input_region_bytes: int
    output_region_bytes: int
    def __init__(self, pid: _Optional[int] = ..., onnxruntime_version: _Optional[str] = ..., confinement: _Optional[_Iterable[str]] = ..., input_region_bytes: _Optional[int] = ..., output_region_bytes: _Optional[int] = ...) -> None: ...

class ModelLoaded(_message.Message):
    __slots__ = ("model_key", "providers")
    MODEL_KEY_FIELD_NUMBER: _ClassVar[int]
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    model_key: str
    providers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model_key: _Optional[str] = ..., providers: _Optional[_Iterable[str]] = ...) -> None: ...

class InferResult(_message.Message):
    __slots__ = ("outputs",)
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    outputs: _containers.RepeatedCompositeFieldContainer[Tensor]
    def __init__(self, outputs: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ...) -> None: ...

class Pong(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WorkerError(_message.Message):
    __slots__ = ("code", "detail")
    class Code(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        CODE_UNSPECIFIED: _ClassVar[WorkerError.Code]
        BAD_REQUEST: _ClassVar[WorkerError.Code]
        LOAD_FAILED: _ClassVar[WorkerError.Code]
        NOT_LOADED: _ClassVar[WorkerError.Code]
        INTERNAL: _ClassVar[WorkerError.Code]
        GPU_UNUSABLE: _ClassVar[WorkerError.Code]
    CODE_UNSPECIFIED: WorkerError.Code
    BAD_REQUEST: WorkerError.Code
    LOAD_FAILED: WorkerError.Code
    NOT_LOADED: WorkerError.Code
    INTERNAL: WorkerError.Code
    GPU_UNUSABLE: WorkerError.Code
    CODE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    code: WorkerError.Code
    detail: str
    def __init__(self, code: _Optional[_Union[WorkerError.Code, str]] = ..., detail: _Optional[str] = ...) -> None: ...

class FromWorker(_message.Message):
    __slots__ = ("id", "hello", "loaded", "result", "error", "pong")
    ID_FIELD_NUMBER: _ClassVar[int]
    HELLO_FIELD_NUMBER: _ClassVar[int]
    LOADED_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PONG_FIELD_NUMBER: _ClassVar[int]
    id: int
    hello: Hello
    loaded: ModelLoaded
    result: InferResult
    error: WorkerError
    pong: Pong
    def __init__(self, id: _Optional[int] = ..., hello: _Optional[_Union[Hello, _Mapping]] = ..., loaded: _Optional[_Union[ModelLoaded, _Mapping]] = ..., result: _Optional[_Union[InferResult, _Mapping]] = ..., error: _Optional[_Union[WorkerError, _Mapping]] = ..., pong: _Optional[_Union[Pong, _Mapping]] = ...) -> None: ...

class SpawnWorker(_message.Message):
    __slots__ = ("tenant", "worker_id", "intra_op_threads", "uid", "gid", "profile", "unsafe_no_sandbox", "devices", "environment", "gpu", "allow_cpu_fallback", "input_region_bytes", "output_region_bytes")
    class EnvironmentEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TENANT_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    INTRA_OP_THREADS_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    UNSAFE_NO_SANDBOX_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    GPU_FIELD_NUMBER: _ClassVar[int]
    ALLOW_CPU_FALLBACK_FIELD_NUMBER: _ClassVar[int]
    INPUT_REGION_BYTES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_REGION_BYTES_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    worker_id: str
    intra_op_threads: int
    uid: int
    gid: int
    profile: Profile
    unsafe_no_sandbox: bool
    devices: _containers.RepeatedCompositeFieldContainer[Device]
    environment: _containers.ScalarMap[str, str]
    gpu: bool
    allow_cpu_fallback: bool
    input_region_bytes: int
    output_region_bytes: int
    def __init__(self, tenant: _Optional[str] = ..., worker_id: _Optional[str] = ..., intra_op_threads: _Optional[int] = ..., uid: _Optional[int] = ..., gid: _Optional[int] = ..., profile: _Optional[_Union[Profile, _Mapping]] = ..., unsafe_no_sandbox: _Optional[bool] = ..., devices: _Optional[_Iterable[_Union[Device, _Mapping]]] = ..., environment: _Optional[_Mapping[str, str]] = ..., gpu: _Optional[bool] = ..., allow_cpu_fallback: _Optional[bool] = ..., input_region_bytes: _Optional[int] = ..., output_region_bytes: _Optional[int] = ...) -> None: ...

class Device(_message.Message):
    __slots__ = ("name", "major", "minor")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MAJOR_FIELD_NUMBER: _ClassVar[int]
    MINOR_FIELD_NUMBER: _ClassVar[int]
    name: str
    major: int
    minor: int
    def __init__(self, name: _Optional[str] = ..., major: _Optional[int] = ..., minor: _Optional[int] = ...) -> None: ...

class Profile(_message.Message):
    __slots__ = ("memory_bytes", "cpu", "pids", "open_files", "file_size_bytes", "wall_seconds", "tmp_bytes")
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    CPU_FIELD_NUMBER: _ClassVar[int]
    PIDS_FIELD_NUMBER: _ClassVar[int]
    OPEN_FILES_FIELD_NUMBER: _ClassVar[int]
    FILE_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    WALL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TMP_BYTES_FIELD_NUMBER: _ClassVar[int]
    memory_bytes: int
    cpu: float
    pids: int
    open_files: int
    file_size_bytes: int
    wall_seconds: float
    tmp_bytes: int
    def __init__(self, memory_bytes: _Optional[int] = ..., cpu: _Optional[float] = ..., pids: _Optional[int] = ..., open_files: _Optional[int] = ..., file_size_bytes: _Optional[int] = ..., wall_seconds: _Optional[float] = ..., tmp_bytes: _Optional[int] = ...) -> None: ...

class StopWorker(_message.Message):
    __slots__ = ("pid",)
    PID_FIELD_NUMBER: _ClassVar[int]
    pid: int
    def __init__(self, pid: _Optional[int] = ...) -> None: ...

class ToLauncher(_message.Message):
    __slots__ = ("id", "spawn", "stop")
    ID_FIELD_NUMBER: _ClassVar[int]
    SPAWN_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    id: int
    spawn: SpawnWorker
    stop: StopWorker
    def __init__(self, id: _Optional[int] = ..., spawn: _Optional[_Union[SpawnWorker, _Mapping]] = ..., stop: _Optional[_Union[StopWorker, _Mapping]] = ...) -> None: ...

class WorkerSpawned(_message.Message):
    __slots__ = ("pid",)
    PID_FIELD_NUMBER: _ClassVar[int]
    pid: int
    def __init__(self, pid: _Optional[int] = ...) -> None: ...

class WorkerExited(_message.Message):
    __slots__ = ("pid", "returncode", "oom_killed")
    PID_FIELD_NUMBER: _ClassVar[int]
    RETURNCODE_FIELD_NUMBER: _ClassVar[int]
    OOM_KILLED_FIELD_NUMBER: _ClassVar[int]
    pid: int
    returncode: int
    oom_killed: bool
    def __init__(self, pid: _Optional[int] = ..., returncode: _Optional[int] = ..., oom_killed: _Optional[bool] = ...) -> None: ...

class LauncherReady(_message.Message):
    __slots__ = ("pid", "onnxruntime_version", "cgroup_version", "unavailable")
    PID_FIELD_NUMBER: _ClassVar[int]
    ONNXRUNTIME_VERSION_FIELD_NUMBER: _ClassVar[int]
    CGROUP_VERSION_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_FIELD_NUMBER: _ClassVar[int]
    pid: int
    onnxruntime_version: str
    cgroup_version: int
    unavailable: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, pid: _Optional[int] = ..., onnxruntime_version: _Optional[str] = ..., cgroup_version: _Optional[int] = ..., unavailable: _Optional[_Iterable[str]] = ...) -> None: ...

class LauncherError(_message.Message):
    __slots__ = ("detail",)
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    detail: str
    def __init__(self, detail: _Optional[str] = ...) -> None: ...

class FromLauncher(_message.Message):
    __slots__ = ("id", "spawned", "error", "exited", "ready")
    ID_FIELD_NUMBER: _ClassVar[int]
    SPAWNED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    EXITED_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    id: int
    spawned: WorkerSpawned
    error: LauncherError
    exited: WorkerExited
    ready: LauncherReady
    def __init__(self, id: _Optional[int] = ..., spawned: _Optional[_Union[WorkerSpawned, _Mapping]] = ..., error: _Optional[_Union[LauncherError, _Mapping]] = ..., exited: _Optional[_Union[WorkerExited, _Mapping]] = ..., ready: _Optional[_Union[LauncherReady, _Mapping]] = ...) -> None: ...
