// The one image every test in examples/nixos/ boots: what a NixOS test declares per node
// (services.*.enable, users.users, environment.etc, systemd.services) is declared here once,
// baked into the image at build time, and so in every snapshot of it. One image for the whole
// suite: it is built once (as root, about a minute; `haltpoint run` builds it before the first
// test) and every machine of one shape after the first starts from that first one's snapshot.
//
// A NixOS test may configure each node differently; a shared image holds the union, and a unit
// only one node needs (nat.service) is installed but not enabled: the test starts it there.

export const image = {
  // services.nginx / services.redis / the NAT router's iptables, and what the scripts call.
  packages: ["curl", "iptables", "iputils-ping", "nginx", "redis-server"],
  // environment.etc and systemd.services, as files in the image.
  files: {
    "/var/www/html/index.html": "initial content\n",
    // networking.nat: MASQUERADE what comes from the inside network (vlan 1) out of eth1.
    "/etc/systemd/system/nat.service": `[Unit]
Description=NAT for 192.168.1.0/24 out of eth1 (NixOS networking.nat)
After=network.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/sysctl -qw net.ipv4.ip_forward=1
ExecStart=/usr/sbin/iptables -t nat -A POSTROUTING -s 192.168.1.0/24 -o eth1 -j MASQUERADE
ExecStop=/usr/sbin/iptables -t nat -D POSTROUTING -s 192.168.1.0/24 -o eth1 -j MASQUERADE
ExecStop=/usr/sbin/sysctl -qw net.ipv4.ip_forward=0
`,
    // A Type=simple service that listens a second after systemd calls it started: haltpoint's
    // own test (test/debian-config.test.ts) checks restored guests find it listening.
    "/etc/systemd/system/late-listener.service": `[Unit]
Description=listens on TCP port 7007 a second after it starts (Type=simple)

[Service]
Type=simple
ExecStart=/bin/sh -c 'sleep 1; exec nc -dlk 7007'

[Install]
WantedBy=multi-user.target
`,
  },
  // users.users and services.redis.servers."".unixSocket, as commands run once at build time.
  setup: `
# redis.nix: the server's unix socket, open to the redis group
printf 'unixsocket /run/redis/redis-server.sock\\nunixsocketperm 770\\n' >> /etc/redis/redis.conf
# users.users.member = { isNormalUser = true; extraGroups = [ "redis" ]; }
useradd --create-home --groups redis member
systemctl enable late-listener.service
`,
};
