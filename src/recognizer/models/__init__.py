"""Models: what a served model is (spec, labels, preprocessing), the sources it comes from
(built in, ModelScope, TorchScript, state dicts, ONNX) and how it is configured and loaded."""
