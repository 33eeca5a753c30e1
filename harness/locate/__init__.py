"""`parity locate`: inside one exported network, the first layer that diverges from PyTorch, named by its
PyTorch module path, and for fp16 the smallest set of layers to keep in fp32 so the network passes its gate.

`core.locate_onnx` (ONNX Runtime) and `coreml.locate_coreml` (the Core ML program on coreml-emulated) measure every
layer into a `types.LocateResult`; `advice.keep_fp32_search` finds the keep-set; `run.locate` is the command.
"""
