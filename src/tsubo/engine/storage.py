"""A container's files: its folder (overlay dirs, bundle, log), the /etc files the engine
owns, and the users of its root (the overlay itself is ``image/snapshots.py``). The engine owns
``/etc/hostname``, ``/etc/hosts`` and ``/etc/resolv.conf``: it writes them in the container's
folder and the runtime bind-mounts them in (resolving the destinations inside the root, so
an image's symlinks there cannot redirect them).

"""

from __future__ import annotations

import os

from tsubo.errors import InvalidArgument, NotFound, TsuboError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


class ContainerFiles:
    """The folder ``<data root>/containers/<id>`` and what lives in it."""

    __slots__ = ("directory",)

    def __init__(self, directory: str) -> None:
        self.directory = directory

    @property
    def bundle(self) -> str:
        return self.directory

    @property
    def config(self) -> str:
        return f"{self.directory}/config.json"

    @property
    def merged(self) -> str:
        return f"{self.directory}/merged"

    @property
    def log(self) -> str:
        return f"{self.directory}/container.log"

    def etc_file(self, name: str) -> str:
        return f"{self.directory}/etc/{name}"

    def create(self, lower_dir: str) -> None:
        os.makedirs(self.directory, mode=0o700)
        for sub in ("upper", "work", "merged", "etc"):
            os.mkdir(f"{self.directory}/{sub}", 0o700 if sub != "merged" else 0o755)
        # The merged root takes the upper directory's mode and owner: give it the image
        # root's, or every non-root user in the container would find / closed (0700).
        info = os.stat(lower_dir)
        os.chmod(f"{self.directory}/upper", info.st_mode & 0o7777)
        os.chown(f"{self.directory}/upper", info.st_uid, info.st_gid)

    def write_etc_files(self, hostname: str, host_resolv_conf: str = "/etc/resolv.conf",
                        nameserver: str = "", *, resolver: ResolverSettings | None = None
                        ) -> dict[str, str]:
        """Write hostname, hosts and resolv.conf (the host's, or *nameserver* alone: the
        gateway's resolver of a container on a network), with *resolver*'s extra hosts,
        nameservers, search domains and options; {container path: host file}."""
        settings = resolver or ResolverSettings()
        names = f"{hostname}.{settings.domainname}\t{hostname}" if settings.domainname \
            else hostname
        hosts = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                 f"127.0.1.1\t{names}\n"
                 + "".join(f"{address}\t{name}\n" for name, address in settings.hosts))
        if nameserver:
            resolv = settings.resolv_conf(f"nameserver {nameserver}\noptions ndots:0\n",
                                          keep_nameservers=True).encode()
        else:
            try:
                with open(host_resolv_conf, "rb") as source:
                    host = source.read(64 * 1024).decode("utf-8", "replace")
            except OSError:
                host = ""
            resolv = settings.resolv_conf(host, keep_nameservers=False).encode()
        files = {"hostname": f"{hostname}\n".encode(), "hosts": hosts.encode(),
                 "resolv.conf": resolv}
        mapping = {}
        for name, content in files.items():
            path = self.etc_file(name)
            with open(path, "wb") as target:
                target.write(content)
            os.chmod(path, 0o644)
            mapping[f"/etc/{name}"] = path
        return mapping

    def remove(self) -> None:
        """Remove the folder (after the root is unmounted); a missing folder is fine."""
        import shutil

        from tsubo.image.snapshots import unmount_root

        if os.path.ismount(self.merged):
            unmount_root(self.merged)
        shutil.rmtree(self.directory, ignore_errors=True)


class ResolverSettings:
    """``--add-host`` (resolved: ``host-gateway`` is an address by now), ``--dns``,
    ``--dns-search``, ``--dns-option`` and ``--domainname``, for the /etc files."""

    __slots__ = ("domainname", "hosts", "nameservers", "options", "search")

    def __init__(self, *, hosts: list[tuple[str, str]] | None = None,
                 nameservers: list[str] | None = None, search: list[str] | None = None,
                 options: list[str] | None = None, domainname: str = "") -> None:
        self.hosts = list(hosts or [])
        self.nameservers = list(nameservers or [])
        self.search = list(search or [])
        self.options = list(options or [])
        self.domainname = domainname

    def resolv_conf(self, base: str, *, keep_nameservers: bool) -> str:
        """*base* with our settings in place of its own: nameservers (unless
        *keep_nameservers*: the network's resolver asks ours upstream), the search list
        (``.`` alone clears it), options (appended: the last ``ndots`` wins)."""
        lines = []
        for line in base.splitlines():
            word = line.split(maxsplit=1)[0] if line.split() else ""
            if (word == "nameserver" and self.nameservers and not keep_nameservers) or \
                    (word in ("search", "domain") and self.search):
                continue
            lines.append(line)
        if self.nameservers and not keep_nameservers:
            lines += [f"nameserver {server}" for server in self.nameservers]
        search = [domain for domain in self.search if domain != "."]
        if search:
            lines.append("search " + " ".join(search))
        if self.options:
            lines.append("options " + " ".join(self.options))
        return "\n".join(lines) + "\n" if lines else ""


def check_lower_dir(path: str) -> str:
    """``--rootfs DIR``: an absolute directory whose path is safe in overlay options."""
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        raise NotFound("use rootfs", path, detail="no such directory")
    if any(char in path for char in ",:\\\n"):
        raise InvalidArgument("use rootfs", path,
                              detail="overlay cannot take a path containing , : or \\")
    return path


def make_passwd_lookup(rootfs: str) -> Callable[[str], tuple[int, int, list[int]]]:
    """A lookup of users in the container's own /etc/passwd and /etc/group, read through
    fd-safe paths (an image may make them symlinks to host files): ``name`` (or ``#uid``)
    -> (uid, primary gid, supplementary gids). Never NSS: the host's users are irrelevant."""

    def lookup(name: str) -> tuple[int, int, list[int]]:
        passwd = _read_in_root(rootfs, "/etc/passwd")
        by_uid = name[1:] if name.startswith("#") else None  # "#1000": look up by uid
        for line in passwd.splitlines():
            fields = line.split(":")
            if len(fields) >= 4 and (fields[2] == by_uid if by_uid else fields[0] == name):
                name = fields[0]
                uid, gid = int(fields[2]), int(fields[3])
                groups = [int(group_fields[2]) for group_fields in
                          (entry.split(":") for entry in
                           _read_in_root(rootfs, "/etc/group").splitlines())
                          if len(group_fields) >= 4 and name in group_fields[3].split(",")
                          and group_fields[2].isdigit()]
                return uid, gid, groups
        raise NotFound("find user", name, detail="no matching entries in passwd file")

    return lookup


def lookup_group(rootfs: str, name: str) -> int:
    """A group name's gid in the container's /etc/group."""
    for line in _read_in_root(rootfs, "/etc/group").splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] == name and fields[2].isdigit():
            return int(fields[2])
    raise NotFound("find group", name, detail="no matching entries in group file")


def _read_in_root(rootfs: str, path: str) -> str:
    """A file of the container's own (an image's or a live root's, so hostile): "" when it
    does not exist; a FIFO, a device node or an oversized file is an error, never read."""
    from tsubo.kernel.untrusted import read_file_in_root

    try:
        return read_file_in_root(rootfs, path).decode("utf-8", "replace")
    except (FileNotFoundError, NotADirectoryError):
        return ""
    except OSError as error:
        raise TsuboError.from_os_error(f"read {path} in", rootfs, error) from None
