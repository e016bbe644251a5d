"""The application under the boot loader: health confirmation of a new slot, reset into a new one.

``main()`` runs ``app.main``'s App plus one small task: once the main loop has run healthy
for CONFIRM_MS (every task beating, no crash, link session started: the self-test), it
confirms the running slot (bootsel, no host needed) and reports UPDATE_STATUS "confirmed";
when the session has switched slots (an update, deferred until the unit is idle) it resets.
"""

import asyncio
from time import ticks_diff, ticks_ms

from micropython import const

from offhook_fw import app as A

CONFIRM_MS = const(2000)
POLL_MS = const(50)


def self_test(app, now):
    return app.healthy(now) and app.crashes == 0 and app.session.started


async def watch(app, started):
    confirmed = False
    session = app.session
    while True:
        await asyncio.sleep_ms(POLL_MS)
        now = ticks_ms()
        if not confirmed and ticks_diff(now, started) >= CONFIRM_MS and self_test(app, now):
            confirmed = True
            session.confirm_health(now)
            session.flush()
        if session.reboot:  # never during a call: the session defers the switch until idle
            session.flush()
            await asyncio.sleep_ms(200)
            app.hw.reset()


async def main(board_name=None, config_path=A.C.PATH):
    app = A.create(board_name, config_path)
    asyncio.create_task(watch(app, ticks_ms()))
    await app.run()
