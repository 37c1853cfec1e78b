#!/bin/busybox sh
# haltpoint guest /init: the whole userland of the default guest image.
#
# Kernel command line (all optional; see vm/image/guest-params.ts):
#   hp.hostname=NAME                 hostname (default "haltpoint")
#   hp.ip=ADDR/PREFIX                static address for eth1 (second NIC, virtual network)
#   hp.hosts=name1:ip1,name2:ip2     extra /etc/hosts entries
#   hp.authorized_key=BASE64         base64 of one authorized_keys line for root
# Network: eth0 is QEMU user networking, configured statically (10.0.2.15/24, gateway
#   10.0.2.2, DNS 10.0.2.3); eth1 only gets hp.ip.
# SSH: dropbear on port 22, root with a blank password (-B) or the authorized key.
# Readiness: "Spawning backdoor root shell..." on the virtio-serial port org.haltpoint.shell
#   (and on the console); then bash reads commands from it, writes stdout there and stderr to the
#   serial console.
# Power: poweroff/halt (-f or not), the ACPI power button (QMP system_powerdown) and the
#   backdoor shell exiting all power the guest off; reboot reboots, which ends a QEMU
#   run with -no-reboot.

# busybox applets live in all four (installed below).
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /root /etc /sbin /usr/bin /usr/sbin /var/log
/bin/busybox ln -s /run /var/run
/bin/busybox mount -t proc proc /proc
# Applets as symlinks (needs /proc for busybox to find itself); existing files win.
/bin/busybox --install -s
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs tmpfs /run
# The initramfs may lack /dev/console (built without root): reopen stdio on the real one.
exec 0</dev/console 1>/dev/console 2>&1

# Modules in dependency order, as the image builder wrote them (absent ones were built in).
for m in $(cat /lib/modules/load-order); do
  insmod "/lib/modules/$m.ko" 2>/dev/null
done

# @guest-identity@

# root's blank password lives in /etc/shadow: busybox cannot resolve a passwd line with
# an empty password field ("unknown uid 0"), while dropbear -B reads shadow.
echo "root:x:0:0:root:/root:/bin/sh" > /etc/passwd
echo "root::19000:0:99999:7:::" > /etc/shadow
chmod 0600 /etc/shadow
echo "root:x:0:" > /etc/group
printf '/bin/sh\n/bin/bash\n' > /etc/shells

# Static addresses: QEMU user networking is fixed, so there is nothing to wait for.
ip link set lo up
if [ -e /sys/class/net/eth0 ]; then
  ip link set eth0 up
  ip addr add 10.0.2.15/24 dev eth0
  ip route add default via 10.0.2.2
  echo "nameserver 10.0.2.3" > /etc/resolv.conf
fi
if [ -n "$hp_ip" ]; then
  if [ -e /sys/class/net/eth1 ]; then
    ip link set eth1 up
    ip addr add "$hp_ip" dev eth1
  else
    echo "haltpoint init: hp.ip=$hp_ip given but there is no eth1 (no second NIC)"
  fi
fi

mkdir -p /root/.ssh /etc/dropbear
chmod 0700 /root /root/.ssh
if [ -n "$hp_key" ]; then
  echo "$hp_key" | base64 -d > /root/.ssh/authorized_keys
  chmod 0600 /root/.ssh/authorized_keys
fi
# Login records dropbear writes (it complains on the console when they are missing).
touch /var/log/lastlog /var/log/wtmp /run/utmp
# One dropbear per connection (inetd mode behind busybox nc): a listening dropbear drops
# connections beyond 5 unauthenticated ones per source address, and every connection
# through the user-network forward comes from 10.0.2.2, so 8 ssh sessions opened at once
# lost some. -R: host keys generated on first use (written atomically, so concurrent
# first connections agree); -B: blank root password allowed. (-E, log to stderr, is
# refused in inetd mode.)
nc -ll -p 22 -e /usr/sbin/dropbear -i -R -B </dev/null &

# ACPI power button (QMP system_powerdown) -> poweroff, where button and evdev loaded.
if [ -d /sys/module/button ] && [ -d /sys/module/evdev ]; then
  mkdir -p /etc/acpi/PWRF
  printf '#!/bin/sh\npoweroff -f\n' > /etc/acpi/PWRF/00000080
  chmod 0755 /etc/acpi/PWRF/00000080
  acpid # daemonises; logs to /var/log/acpid.log (it exits at once if it cannot open that)
fi

# The backdoor shell's port (vm/qemu/qemu-argv.ts SHELL_PORT_NAME): a virtio-serial port, not
# hvc0, because QEMU drops a virtconsole's output when the host reads too slowly and throttles a
# plain port instead. It shows up a moment after virtio_console loads; hvc0 serves when QEMU
# was started with a virtconsole (an older argv).
named_port() { # $1: port name -> /dev/vportNpM, or nothing
  for p in /sys/class/virtio-ports/*; do
    [ "$(cat "$p/name" 2>/dev/null)" = "$1" ] && echo "/dev/${p##*/}"
  done
}
i=0
shell_dev=
while [ -z "$shell_dev" ] && [ "$i" -lt 500 ]; do
  shell_dev=$(named_port org.haltpoint.shell)
  [ -z "$shell_dev" ] && [ -e /dev/hvc0 ] && [ "$i" -gt 50 ] && shell_dev=/dev/hvc0
  [ -n "$shell_dev" ] || usleep 10000
  i=$((i + 1))
done
if [ -z "$shell_dev" ]; then
  echo "haltpoint init: no backdoor shell port (org.haltpoint.shell or hvc0) appeared; shell on the console"
  exec sh
fi

# Kill requests (vm/qemu/kill-port.ts): the host writes "kill <id>" to the virtio-serial port
# named org.haltpoint.kill when backdoor command <id> runs past its timeout. Each command's
# subshell writes "<id> <pid>" to /tmp/.hp-running when it starts; if that file still names
# <id>, the subshell and every process under it get SIGKILL, so the shell answers that command
# and reads the next. The tree is listed before anything is killed (a killed parent's children
# would move to PID 1), twice, to catch what forked meanwhile, each time only while the file
# still names <id>: the next command is never hit. Daemons a command left running were handed
# to PID 1 when their command ended: they are not the command's and stay.
descendants() {
  for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
    echo "$c"
    descendants "$c"
  done
}
serve_kill_requests() {
  port=
  i=0
  while [ -z "$port" ] && [ "$i" -lt 100 ]; do
    port=$(named_port org.haltpoint.kill)
    [ -n "$port" ] || { usleep 50000; i=$((i + 1)); }
  done
  [ -n "$port" ] || return 0 # started without the port: nothing to serve
  exec 4<"$port"
  while :; do
    if read -r _ id <&4; then
      for pass in 1 2; do
        running=$(cat /tmp/.hp-running 2>/dev/null)
        [ "${running%% *}" = "$id" ] || break
        pid=${running#* }
        pids=$(descendants "$pid")
        kill -KILL "$pid" $pids 2>/dev/null
      done
    else
      usleep 200000 # the host end is not connected (reads see EOF): wait for it
    fi
  done
}

cd /root
# Kept open here for as long as bash runs (hvc resets its termios on last close).
exec 3<>"$shell_dev"
[ "$shell_dev" = /dev/hvc0 ] && stty raw -echo <&3
echo "Spawning backdoor root shell..." >&3
echo "Spawning backdoor root shell..."

# bash runs as a child, not as PID 1: PID 1 ignores signals it has no handler for, so
# busybox halt/poweroff (SIGUSR1/SIGUSR2) and reboot (SIGTERM) would do nothing.
trap 'poweroff -f' USR1 USR2
trap 'reboot -f' TERM
# A script argument (not stdin) keeps bash non-interactive, as on NixOS guests.
# A virtio-serial port can be open only once (init holds it as fd 3), so there bash reads
# its commands from stdin: not a tty, so non-interactive too (it reads a byte at a time, as
# it does from hvc0).
if [ "$shell_dev" = /dev/hvc0 ]; then
  env -i PATH="$PATH" HOME=/root USER=root \
    /bin/bash --norc --noprofile /dev/hvc0 0<&3 1>&3 2>/dev/console 3>&- &
else
  env -i PATH="$PATH" HOME=/root USER=root \
    /bin/bash --norc --noprofile -s 0<&3 1>&3 2>/dev/console 3>&- &
fi
shell=$!
serve_kill_requests 3>&- &
while :; do
  wait "$shell" && break
  kill -0 "$shell" 2>/dev/null || break
done
echo "haltpoint init: backdoor shell exited; powering off"
poweroff -f
