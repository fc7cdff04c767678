"""Programs that tests run in separate OS processes (``python -m tests.peers.<name>``).

``bus_peer`` (a bare NatsBus), ``runner_peer`` (a WorkerRunner), ``transport_peer`` (a bridged
transport), ``traced_worker`` (a traced worker) and ``cli_workers`` (workers for ``natsbus
run``). They run from the repository root with it on PYTHONPATH; ``helpers.process.Peer``
starts them and follows what they print.
"""
