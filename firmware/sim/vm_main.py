"""The VM's main.py: the same application as on a board, minus asyncio.run (absent there).

Load with ``offhook.firmware.vm_files()``; from runPythonAsync: ``import vm_main;
await vm_main.main()`` (after ``import boot`` when the VM boots like a board: slot
selection, safe mode). Tests that want explicit time use ``vm_main.create()`` and
call ``app.boot(t)`` / ``app.step(t)`` themselves.
"""

import sys

from offhook_fw import app


def create(config_path="/config.json"):
    return app.create("sim", config_path)


async def main(config_path="/config.json"):
    boot = getattr(sys.modules.get("bootsel"), "BOOT", None)
    if boot and boot[0] == "safe":
        import loader

        await loader.main("sim")
    from offhook_fw import health

    await health.main("sim", config_path)
