"""python -m engine.serve: live tracking of cameras and streams as a service (the `serve` extra).

`schema` describes the deployment file and the API's requests, `service` runs sources on one tracker,
`sinks` writes results out, `app` is the HTTP and WebSocket API over a service.
"""
