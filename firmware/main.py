# Entry on a real board (Pico, ESP32-S3), after boot.py chose a slot (bootsel.BOOT).
# The application is offhook_fw.app's App from that slot, run by health.main (slot confirmation;
# the simulator's entry, sim/vm_main.py, awaits the same); safe mode runs the minimal loader
# instead. Never ends at the REPL: anything that returns or raises resets the board, which counts a boot try (rollback).
import asyncio

import bootsel
import machine

try:
    if bootsel.BOOT and bootsel.BOOT[0] == "safe":
        import loader

        asyncio.run(loader.main())
    else:
        from offhook_fw import health

        asyncio.run(health.main())
except Exception:
    pass
machine.reset()
