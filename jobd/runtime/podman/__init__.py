"""The podman runtime: the client (client.py) over podman's API, its event stream (events.py),
the translation of podman's shapes and errors (translate.py), OOM watching (oom.py), exec
(exec.py), the embedded image (image.py), and jobd's private `podman system service`
(service.py)."""
