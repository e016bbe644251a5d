# Entry on a real board (Pico, ESP32-S3): everything it starts is offhook_fw.app.main,
# the same code the simulator runs (its entry, sim/vm_main.py, awaits it instead).
import asyncio

from offhook_fw import app

asyncio.run(app.main())
