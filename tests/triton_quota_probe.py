"""Run by tests/test_quota_grpc.py in its own process (tritonclient's protos clash with
IRE's in one process): two predictions with unmodified tritonclient; print what it saw."""

import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException


def main() -> None:
    address, token = sys.argv[1], sys.argv[2]
    client = grpcclient.InferenceServerClient(address)
    headers = {"authorization": f"Bearer {token}"}
    inp = grpcclient.InferInput("input", [1, 64], "FP32")
    inp.set_data_from_numpy(np.ones((1, 64), np.float32))
    out: dict[str, str] = {}
    client.infer("mlp", [inp], headers=headers)
    out["first"] = "ok"
    try:
        client.infer("mlp", [inp], headers=headers)
        out["second_status"] = "OK"
    except InferenceServerException as exc:
        out["second_status"] = str(exc.status())
        out["second_message"] = str(exc.message())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
