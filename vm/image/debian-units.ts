// What haltpoint adds to a Debian systemd guest's root file system: three systemd units and
// their scripts, doing for systemd what vm/image/guest-init.sh does as haltpoint's own PID 1.
//
// - haltpoint-setup.service: reads the `hp.*` kernel parameters (vm/image/guest-params.ts):
//   hostname, /etc/hosts, eth0 on QEMU user networking (10.0.2.15/24), eth1 on the run's
//   virtual network (hp.ip), root's authorized key. It is the guest's network configuration,
//   so it pulls in network.target, as a network management service does (without it nothing
//   does in a minbase guest, and NixOS tests wait for network.target).
// - haltpoint-backdoor.service: the backdoor shell (vm/backdoor-shell.ts) on the virtio-serial
//   port org.haltpoint.shell (vm/qemu/qemu-argv.ts SHELL_PORT_NAME), or on hvc0 when the guest
//   was given a virtconsole instead (a start script's or a disk image's QEMU, as NixOS guests
//   are). udev starts it when either device appears (SYSTEMD_WANTS), so it is ordered after the
//   device, as NixOS's backdoor is with Requires=/After=dev-hvc0.device (without that it races
//   the device and never runs), and a boot without the device does not wait for it.
// - haltpoint-kill.service: serves the kill port (vm/qemu/kill-port.ts): each line written to
//   org.haltpoint.kill ("kill <id>") kills that backdoor command's tree; started by its device too.
// Plus: root without a password, sshd (PAM on, as Debian ships it) letting root in with an
// empty password (as dropbear -B does in haltpoint's own guest), a volatile journal, and timers
// that would only cost time off. docs/debian-guests.md lists every difference from stock Debian.

import { KILL_PORT_NAME, SHELL_PORT_NAME } from "../qemu/qemu-argv.ts";
import { RUNNING_FILE } from "../qemu/kill-port.ts";
import { withGuestIdentity } from "./guest-identity.ts";
import { BACKDOOR_MARKER as READY_MARKER } from "../qemu/shell-listener.ts";

export interface GuestFile {
  path: string;
  mode: number;
  content: string;
}

/** The systemd device unit of a virtio-serial port udev links as /dev/virtio-ports/NAME. */
function portDeviceUnit(name: string): string {
  // systemd-escape --path: '/' → '-', '-' → \x2d.
  return `dev-virtio\\x2dports-${name.replace(/-/g, "\\x2d")}.device`;
}

const LIB = "/usr/local/lib/haltpoint";

const SETUP_SCRIPT = withGuestIdentity(`#!/bin/bash
# haltpoint: this machine's identity from the kernel command line (hp.* parameters).
hp_default_hostname=debian
# @guest-identity@
ip link set lo up
if [ -e /sys/class/net/eth0 ]; then
  ip link set eth0 up
  ip addr replace 10.0.2.15/24 dev eth0
  ip route replace default via 10.0.2.2
  echo "nameserver 10.0.2.3" > /etc/resolv.conf
fi
if [ -n "$hp_ip" ]; then
  for _ in $(seq 100); do [ -e /sys/class/net/eth1 ] && break; sleep 0.1; done
  if [ -e /sys/class/net/eth1 ]; then
    ip link set eth1 up
    ip addr replace "$hp_ip" dev eth1
  else
    echo "haltpoint-setup: hp.ip=$hp_ip given but there is no eth1" >&2
  fi
fi
mkdir -p /root/.ssh
chmod 0700 /root /root/.ssh
if [ -n "$hp_key" ]; then
  echo "$hp_key" | base64 -d > /root/.ssh/authorized_keys
  chmod 0600 /root/.ssh/authorized_keys
fi
exit 0
`);

const BACKDOOR_SCRIPT = `#!/bin/bash
# haltpoint: the backdoor root shell (framing: vm/backdoor-shell.ts in haltpoint).
port=/dev/virtio-ports/${SHELL_PORT_NAME}
[ -e "$port" ] || port=/dev/hvc0
cd /root
exec 3<>"$port"
[ "$port" = /dev/hvc0 ] && stty raw -echo <&3
echo "${READY_MARKER}" >&3
echo "${READY_MARKER}" >/dev/console
# Not interactive: a script argument on a tty, stdin on a plain port (which opens only once).
if [ "$port" = /dev/hvc0 ]; then
  exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root USER=root LANG=C.UTF-8 \\
    /bin/bash --norc --noprofile /dev/hvc0 0<&3 1>&3 2>/dev/console 3>&-
fi
exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root USER=root LANG=C.UTF-8 \\
  /bin/bash --norc --noprofile -s 0<&3 1>&3 2>/dev/console 3>&-
`;

const RUNNING = RUNNING_FILE;
const KILL_SCRIPT = `#!/bin/bash
# haltpoint: a kill request "kill <id>" kills backdoor command <id> (vm/qemu/kill-port.ts) if it
# still runs: each command's subshell writes "<id> <pid>" to ${RUNNING}; a request for a
# command that has ended does nothing, so the next command is never hit. The command's tree is
# stopped before anything is killed (listed and stopped twice, to catch what forked meanwhile),
# then killed at once.
descendants() {
  local c
  for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
    echo "$c"
    descendants "$c"
  done
}
exec 4<"/dev/virtio-ports/${KILL_PORT_NAME}"
while :; do
  if read -r _ id <&4; then
    running=$(cat ${RUNNING} 2>/dev/null)
    [ -n "$id" ] && [ "\${running%% *}" = "$id" ] || continue
    pid=\${running#* }
    kill -STOP "$pid" 2>/dev/null || continue
    all="$pid"
    for pass in 1 2; do
      pids=$(descendants "$pid")
      [ -n "$pids" ] && kill -STOP $pids 2>/dev/null
      all="$all $pids"
    done
    kill -KILL $all 2>/dev/null
  else
    sleep 0.2 # the host end is not connected (reads see EOF)
  fi
done
`;

const SETUP_UNIT = `[Unit]
Description=haltpoint: hostname, hosts and network from the kernel command line
DefaultDependencies=no
Wants=sys-subsystem-net-devices-eth0.device network-pre.target network.target
After=systemd-remount-fs.service sys-subsystem-net-devices-eth0.device
Before=network-pre.target network.target ssh.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=${LIB}/setup

[Install]
WantedBy=multi-user.target
`;

// Started by udev (UDEV_RULES) when its port appears: no [Install].
const BACKDOOR_UNIT = `[Unit]
Description=haltpoint backdoor root shell
DefaultDependencies=no
After=haltpoint-setup.service systemd-remount-fs.service
Wants=haltpoint-setup.service

[Service]
ExecStart=${LIB}/backdoor
`;

const KILL_UNIT = `[Unit]
Description=haltpoint kill port (stops a backdoor command past its timeout)
DefaultDependencies=no
Requires=${portDeviceUnit(KILL_PORT_NAME)}
After=${portDeviceUnit(KILL_PORT_NAME)}

[Service]
ExecStart=${LIB}/kill-port
`;

/** The devices that start the backdoor and the kill port (99-systemd.rules tags vport* and hvc* for systemd already). */
const UDEV_RULES = `# haltpoint: the backdoor shell and the kill port start when their device appears.
SUBSYSTEM=="virtio-ports", ATTR{name}=="${SHELL_PORT_NAME}", TAG+="systemd", ENV{SYSTEMD_WANTS}+="haltpoint-backdoor.service"
SUBSYSTEM=="virtio-ports", ATTR{name}=="${KILL_PORT_NAME}", TAG+="systemd", ENV{SYSTEMD_WANTS}+="haltpoint-kill.service"
SUBSYSTEM=="tty", KERNEL=="hvc0", TAG+="systemd", ENV{SYSTEMD_WANTS}+="haltpoint-backdoor.service"
`;

// PAM stays on (Debian's UsePAM yes): with it off, OpenSSH refuses every locked account, and
// a user made by useradd has no password, so is locked, even for key logins. Root's empty
// password goes through PAM's common-auth (pam_unix nullok) once sshd permits empty ones.
const SSHD_CONFIG = `# haltpoint: a test guest; root logs in with no password (and with hp.authorized_key).
PermitRootLogin yes
PermitEmptyPasswords yes
PasswordAuthentication yes
UseDNS no
`;

const JOURNALD_CONFIG = `[Journal]
# In memory: a restored snapshot's disk then holds nothing the guest still has to write.
Storage=volatile
`;

/** Files written into the root file system after the packages are installed. */
export const DEBIAN_GUEST_FILES: readonly GuestFile[] = [
  { path: `${LIB}/setup`, mode: 0o755, content: SETUP_SCRIPT },
  { path: `${LIB}/backdoor`, mode: 0o755, content: BACKDOOR_SCRIPT },
  { path: `${LIB}/kill-port`, mode: 0o755, content: KILL_SCRIPT },
  { path: "/etc/systemd/system/haltpoint-setup.service", mode: 0o644, content: SETUP_UNIT },
  { path: "/etc/systemd/system/haltpoint-backdoor.service", mode: 0o644, content: BACKDOOR_UNIT },
  { path: "/etc/systemd/system/haltpoint-kill.service", mode: 0o644, content: KILL_UNIT },
  { path: "/etc/udev/rules.d/60-haltpoint.rules", mode: 0o644, content: UDEV_RULES },
  { path: "/etc/ssh/sshd_config.d/haltpoint.conf", mode: 0o644, content: SSHD_CONFIG },
  { path: "/etc/systemd/journald.conf.d/haltpoint.conf", mode: 0o644, content: JOURNALD_CONFIG },
  { path: "/etc/fstab", mode: 0o644, content: "/dev/vda / ext4 rw,noatime 0 0\n" },
  { path: "/etc/hostname", mode: 0o644, content: "debian\n" },
];

/** Run in the chroot once the files are in place (bash, `set -e`). */
export const DEBIAN_CUSTOMIZE_SCRIPT = [
  "passwd -d root >/dev/null",
  "systemctl enable haltpoint-setup.service 2>/dev/null",
  "systemctl set-default multi-user.target 2>/dev/null",
  // Timers that reach for the network or the disk in the middle of a test.
  "systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer man-db.timer 2>/dev/null",
  // e2scrub_reap looks for LVM snapshots to remove: 10 s of a TCG boot, and there is no LVM.
  "systemctl mask e2scrub_reap.service 2>/dev/null",
  "rm -f /etc/machine-id /var/lib/dbus/machine-id && touch /etc/machine-id",
].join("\n");

/**
 * What a Debian guest's kernel command line has beyond haltpoint's (DEFAULT_APPEND and the
 * `hp.*` parameters): root on the virtio disk, classic interface names (eth0 user network,
 * eth1 the run's network).
 */
export const DEBIAN_ROOT_APPEND = "root=/dev/vda rw net.ifnames=0";

/** The initramfs only needs to find the virtio disk and mount ext4 (MODULES=list keeps it small). */
export const INITRAMFS_MODULES = ["virtio_pci", "virtio_blk", "ext4", "crc32c_generic"] as const;
