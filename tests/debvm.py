"""Boot a Debian root (debroot.BOOKWORM_BOOT) as a virtual machine with systemd as PID 1, for the tests that need
a real service manager: QEMU with its own CPU emulation (TCG), so no /dev/kvm is needed, and user-mode
networking, where the guest reaches the host's loopback at 10.0.2.2. The root becomes an ext4 image with
`mke2fs -d` (no loop device, no mount); what the guest prints to its serial console comes back as text.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

HOST = "10.0.2.2"  # the host's 127.0.0.1, seen from the guest
_NETWORK = "[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n"


def prepare(root: Path) -> None:
    """What a booted root needs beyond the packages: its disk in fstab, a name, and DHCP from QEMU by networkd
    (network-online.target waits for it)."""
    (root / "etc/fstab").write_text("/dev/vda / ext4 rw,errors=remount-ro 0 1\n")
    (root / "etc/hostname").write_text("screenpop-vm\n")
    (root / "etc/systemd/network/10-qemu.network").write_text(_NETWORK)
    for unit, target in (("systemd-networkd.service", "multi-user.target"),
                         ("systemd-networkd-wait-online.service", "network-online.target")):
        wants = root / "etc/systemd/system" / f"{target}.wants"
        wants.mkdir(parents=True, exist_ok=True)
        link = wants / unit
        if not link.is_symlink():
            link.symlink_to(f"/lib/systemd/system/{unit}")


def boot(root: Path, image: Path, console: Path, timeout: float) -> str:
    """Boot root from a disk image made at `image` (deleted afterwards) until it powers itself off; the serial
    console's text. A guest still up after timeout seconds is killed and the text so far returned (the caller's
    assertions then say what is missing)."""
    prepare(root)
    kernel = max((root / "boot").glob("vmlinuz-*"))
    initrd = root / "boot" / kernel.name.replace("vmlinuz", "initrd.img")
    subprocess.run(["mke2fs", "-q", "-t", "ext4", "-d", str(root), "-F", str(image), "3G"], check=True)
    with open(console, "wb") as out:
        qemu = subprocess.Popen(
            ["qemu-system-x86_64", "-accel", "tcg,thread=multi", "-cpu", "max", "-m", "1024", "-smp", "2",
             "-nographic", "-no-reboot", "-kernel", str(kernel), "-initrd", str(initrd),
             "-append", "root=/dev/vda rw console=ttyS0 quiet",
             "-drive", f"file={image},format=raw,if=virtio",
             "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        try:
            qemu.wait(timeout)
        except subprocess.TimeoutExpired:
            qemu.kill()
            qemu.wait()
        finally:
            image.unlink()
    return console.read_bytes().decode("utf-8", "replace")
