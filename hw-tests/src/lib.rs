//! Hardware-in-the-loop harness: builds a guest, boots QEMU, runs scenarios.
