"""The VM's main.py: the same application as on a board, minus asyncio.run (absent there).

Load with ``offhook.firmware.vm_files()``; from runPythonAsync: ``import vm_main;
await vm_main.main()``. Tests that want explicit time use ``vm_main.create()`` and
call ``app.boot(t)`` / ``app.step(t)`` themselves.
"""

from offhook_fw import app


def create(config_path="/config.json"):
    return app.create("sim", config_path)


async def main(config_path="/config.json"):
    await app.main("sim", config_path)
