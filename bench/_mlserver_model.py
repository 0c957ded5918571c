"""The MLServer 1.7.1 peer's custom runtime: the same ONNX model through ONNX Runtime.

This file is copied into the peer's model folder and imported by MLServer from its own
virtual environment (bench/.venv-mlserver), never by IRE: MLServer cannot share a process
with the project's other OIP stubs. The session options match IRE's workers.
"""

from __future__ import annotations

import onnxruntime as ort  # type: ignore[import-not-found,unused-ignore]
from mlserver import MLModel  # type: ignore[import-not-found,unused-ignore]
from mlserver.codecs import NumpyCodec  # type: ignore[import-not-found,unused-ignore]
from mlserver.types import InferenceRequest, InferenceResponse  # type: ignore[import-not-found,unused-ignore]


class OnnxModel(MLModel):  # type: ignore[misc,unused-ignore]
    """Decode every input with NumpyCodec, run the session, encode every output."""

    async def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        uri = self.settings.parameters.uri
        self._session = ort.InferenceSession(uri, sess_options=options, providers=["CPUExecutionProvider"])
        self._outputs = [o.name for o in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {i.name: NumpyCodec.decode_input(i) for i in payload.inputs}
        arrays = self._session.run(self._outputs, feeds)
        outputs = [NumpyCodec.encode_output(n, a) for n, a in zip(self._outputs, arrays, strict=True)]
        return InferenceResponse(model_name=self.name, id=payload.id, outputs=outputs)
