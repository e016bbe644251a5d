"""The simulated desk unit: real firmware on the real MicroPython VM, reached over a pty."""
