"""``import --change`` instructions -> image config fields, as Docker's import takes them."""

from __future__ import annotations

import pytest

from tsubo.errors import InvalidArgument
from tsubo.image.store import parse_changes


def test_every_instruction() -> None:
    config = parse_changes([
        'CMD ["sh", "-c", "echo hi"]', "ENTRYPOINT /bin/init", "ENV A=1", "ENV B two words",
        "WORKDIR /srv", "USER 1000:1000", 'LABEL k="v"', "STOPSIGNAL SIGUSR1",
        "VOLUME /data /logs", 'VOLUME ["/cache"]', "EXPOSE 80 53/udp", "expose 8443/TCP",
    ])
    assert config == {
        "Cmd": ["sh", "-c", "echo hi"], "Entrypoint": ["/bin/sh", "-c", "/bin/init"],
        "Env": ["A=1", "B=two words"], "WorkingDir": "/srv", "User": "1000:1000",
        "Labels": {"k": "v"}, "StopSignal": "SIGUSR1",
        "Volumes": {"/data": {}, "/logs": {}, "/cache": {}},
        "ExposedPorts": {"80/tcp": {}, "53/udp": {}, "8443/tcp": {}},
    }


@pytest.mark.parametrize("change", [
    "VOLUME data", "VOLUME", "EXPOSE 0", "EXPOSE 70000", "EXPOSE 80/icmp", "EXPOSE http",
    'CMD ["sh", 1]', "CMD [not json", "ENV", "RUN echo no",
])
def test_bad_instructions_are_one_line_errors(change: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        parse_changes([change])
    assert "\n" not in error.value.message()
