"""torch -> ONNX export of the four stage models. The only package that imports torch or sam2."""
