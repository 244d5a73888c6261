"""Post-training int8 quantization of a model set (python -m engine.quantize).

calibrate.py runs the exact tracker over a calibration video and keeps every stage's inputs; ptq.py hands
them to NNCF, which writes QDQ int8 ONNX stages that ONNX Runtime and OpenVINO both run. The new set's
manifest records which stages are int8, the calibration source and the fidelity measured when it was made.
Export-time tooling: needs the `quantize` extra (nncf), never needed to track.
"""
