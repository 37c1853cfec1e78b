// What kind of file system a path is on, by the kernel's own word for it: statfs(2)'s f_type
// (the magic numbers of linux/magic.h), not the path's prefix. A tmpfs under /dev (/dev/shm)
// is a fine place for logs; a proc or sysfs mounted anywhere is not.
import { readFileSync, statfsSync } from "node:fs";

/** Kernel file systems (and hugetlbfs, which takes no write()): files there are not files. */
const KERNEL_FS = new Map<number, string>([
  [0x9fa0, "proc"],
  [0x62656572, "sysfs"],
  [0x1cd1, "devpts"],
  [0x27e0eb, "cgroup"],
  [0x63677270, "cgroup2"],
  [0x64626720, "debugfs"],
  [0x74726163, "tracefs"],
  [0x73636673, "securityfs"],
  [0xcafe4a11, "bpf"],
  [0x6165676c, "pstore"],
  [0x62656570, "configfs"],
  [0xf97cff8c, "selinuxfs"],
  [0x43415d53, "smackfs"],
  [0xde5e81e4, "efivarfs"],
  [0x19800202, "mqueue"],
  [0x42494e4d, "binfmt_misc"],
  [0x65735543, "fusectl"],
  [0x6e736673, "nsfs"],
  [0x958458f6, "hugetlbfs"],
]);
const TMPFS_MAGIC = 0x01021994;
const OTHER_FS = new Map<number, string>([
  [TMPFS_MAGIC, "tmpfs"],
  [0x858458f6, "ramfs"],
  [0xef53, "ext4"],
  [0x58465342, "xfs"],
  [0x9123683e, "btrfs"],
  [0x794c7630, "overlayfs"],
  [0x6969, "nfs"],
  [0x65735546, "fuse"],
]);

export interface FileSystemType {
  /** The file system's name (proc, tmpfs, …), or its magic number in hex when unknown. */
  name: string;
  /** A kernel file system: no place for logs, reports or state. */
  kernel: boolean;
}

/** The mount's type as /proc/self/mountinfo says, for the mount point that holds `real` (a resolved path). */
function mountInfoType(real: string): string | undefined {
  let text: string;
  try {
    text = readFileSync("/proc/self/mountinfo", "utf8");
  } catch {
    return undefined;
  }
  let best: { point: string; type: string } | undefined;
  for (const line of text.split("\n")) {
    const [left, right] = line.split(" - ");
    if (!left || !right) continue;
    // Spaces and the like in mount points are octal escapes (\040).
    const point = left.split(" ")[4]?.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
    if (!point) continue;
    const under = point === "/" || real === point || real.startsWith(`${point}/`);
    // The last of equally long mount points is the one on top.
    if (under && (!best || point.length >= best.point.length)) best = { point, type: right.split(" ")[0] ?? "" };
  }
  return best?.type;
}

/** The type of the file system `real` (an existing, resolved path) is on. */
export function fileSystemType(real: string): FileSystemType {
  const magic = statfsSync(real).type;
  const kernel = KERNEL_FS.get(magic);
  if (kernel) return { name: kernel, kernel: true };
  // devtmpfs (/dev) is a tmpfs inside, with tmpfs's magic: only the mount table tells them apart.
  if (magic === TMPFS_MAGIC && mountInfoType(real) === "devtmpfs") return { name: "devtmpfs", kernel: true };
  return { name: OTHER_FS.get(magic) ?? `0x${magic.toString(16)}`, kernel: false };
}

/** File systems held in memory: files there cost no disk I/O (the run log makes its files synchronously there). */
export const IN_MEMORY_FS: ReadonlySet<string> = new Set(["tmpfs", "ramfs"]);
