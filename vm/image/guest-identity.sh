# The machine's identity from the kernel command line (hp.* parameters, vm/image/guest-params.ts):
# its hostname and /etc/hosts; sets hp_ip and hp_key for the caller. Shared by haltpoint's /init
# (guest-init.sh) and the Debian guests' setup (debian-units.ts), where the image builders put
# it in place of the line "# @guest-identity@". POSIX sh: busybox and bash both run it.
# hp_default_hostname: the hostname when the command line names none.
# Kernel command line: no globbing while splitting it into words.
set -f
hp_hostname=${hp_default_hostname:-haltpoint} hp_ip= hp_hosts= hp_key=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    hp.hostname=*) hp_hostname="${arg#hp.hostname=}" ;;
    hp.ip=*) hp_ip="${arg#hp.ip=}" ;;
    hp.hosts=*) hp_hosts="${arg#hp.hosts=}" ;;
    hp.authorized_key=*) hp_key="${arg#hp.authorized_key=}" ;;
  esac
done
set +f

hostname "$hp_hostname"
echo "$hp_hostname" > /etc/hostname
{
  echo "127.0.0.1 localhost"
  echo "127.0.1.1 $hp_hostname"
  echo "$hp_hosts" | tr ',' '\n' | while IFS=: read -r name addr; do
    [ -n "$name" ] && [ -n "$addr" ] && echo "$addr $name"
  done
} > /etc/hosts
