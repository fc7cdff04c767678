"""natsbus depends on the OpenTelemetry API only, and `import natsbus` stays cheap."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# Runs in a fresh interpreter in which the OpenTelemetry SDK (and the semconv package) cannot
# be imported, as on an install without the `otel` extra.
WITHOUT_SDK = textwrap.dedent(
    """
    import asyncio, sys

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.startswith(("opentelemetry.sdk", "opentelemetry.semconv")):
                raise ImportError(f"{name} is not installed")
            return None

    sys.meta_path.insert(0, Block())
    import natsbus
    assert "nats.aio.client" not in sys.modules, "import natsbus loaded nats-py"
    from natsbus.observability import BusTracing
    from natsbus.observability.sdk import configure_tracing

    async def main():
        bus = natsbus.AsyncQueueBus(observer=BusTracing())
        async with bus:
            await bus.send(natsbus.BusActivateWorkerMessage(source="x"))
    asyncio.run(main())
    try:
        configure_tracing("console", service_name="x")
    except ValueError as error:
        assert "natsbus[otel]" in str(error), error
    else:
        raise AssertionError("configure_tracing worked without the SDK")
    natsbus.NatsBus  # imported on first use
    assert "nats.aio.client" in sys.modules
    print("ok")
    """
)


def test_the_library_runs_without_the_sdk_and_imports_nats_py_on_first_use() -> None:
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_SDK], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_no_module_imports_the_semconv_package() -> None:
    probe = (
        "import sys, natsbus, natsbus.observability, natsbus.observability.tracing, "
        "natsbus.bus.nats, natsbus.cli; "
        "print([m for m in sys.modules if m.startswith('opentelemetry.semconv')])"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
