"""Runs llama-cpp-python's OpenAI-compatible server, as ``python -m llama_cpp.server`` does.

Started by the tests as ``python tests/integration/llama_server.py --model ... --port ...``.
The one difference: ggml's AMX matrix kernels crash (SIGSEGV in ggml_backend_amx_mul_mat) on
this machine's Xeon with llama-cpp-python 0.3.36 built natively, and the server has no option to
turn them off. llama.cpp's ``use_extra_bufts = false`` model parameter does, so the default model
parameters are wrapped to set it before the server builds its model.
"""

from __future__ import annotations

from typing import Any

import llama_cpp.llama as llama_module
import llama_cpp.server.__main__ as server_main

_default_params = llama_module.llama_cpp.llama_model_default_params


def _params_without_extra_buffers() -> Any:
    params = _default_params()
    params.use_extra_bufts = False
    return params


llama_module.llama_cpp.llama_model_default_params = _params_without_extra_buffers

if __name__ == "__main__":
    server_main.main()
