"""The command line: parsing, help texts, check's exit codes."""

from __future__ import annotations

import pytest

from sesame import cli
from tests.helpers.configs import EXAMPLE


@pytest.mark.parametrize("command", ["serve", "knock", "status", "check", "lab"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main([command, "--help"])
    assert done.value.code == 0
    assert len(capsys.readouterr().out) > 200


@pytest.mark.parametrize(
    ("argv", "verbose"),
    [
        (["-v", "serve", "-c", "x"], True),
        (["serve", "-v", "-c", "x"], True),
        (["serve", "-c", "x"], False),
    ],
)
def test_verbose_before_or_after_the_subcommand(argv, verbose):
    assert cli.parser().parse_args(argv).verbose is verbose


def test_check_ok_and_bad(tmp_path, capsys):
    good = tmp_path / "good.toml"
    good.write_text(EXAMPLE)
    assert cli.main(["check", "-c", str(good)]) == 0
    assert "1 door: ssh" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text(EXAMPLE.replace("open_for = 30", "open_for = 30000000"))
    assert cli.main(["check", "-c", str(bad)]) == 2
    assert capsys.readouterr().err.startswith(f"{bad}:9: open_for must be")


def test_knock_rejects_a_bad_port(capsys):
    assert cli.main(["knock", "127.0.0.1", "70000"]) == 1
    assert "out of range" in capsys.readouterr().err


def test_check_takes_the_peers_files_too(tmp_path, capsys):
    good = tmp_path / "knockd.conf"
    good.write_text(
        "[options]\n interface = eth1\n[ssh]\n sequence = 7000,8000:udp\n"
        " command = /bin/true %IP%\n"
    )
    # eth1 is not on this host: a config written for another host is checked so.
    assert cli.main(["check", "--knockd-conf", str(good), "--other-host"]) == 0
    assert "1 door: ssh" in capsys.readouterr().out
    assert cli.main(["check", "--knockd-conf", str(good)]) == 2
    assert capsys.readouterr().err.startswith(f'{good}:2: interface "eth1" does not exist')
    bad = tmp_path / "bad.conf"
    bad.write_text("[ssh]\n sequence = 7000\n tcpflags = syn,bogus\n")
    assert cli.main(["check", "--knockd-conf", str(bad)]) == 2
    assert capsys.readouterr().err.startswith(f"{bad}:3: unrecognized flag")


def test_a_config_holding_keys_that_others_may_read_is_refused(tmp_path, capsys):
    from tests.helpers.configs import SERVER

    path = tmp_path / "sesame.toml"
    path.write_text(SERVER)
    path.chmod(0o644)
    assert cli.main(["check", "-c", str(path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"{path}:6: this file holds a key and others may read it (mode 0644)")
    assert f"chmod 640 {path}" in error
    path.chmod(0o640)  # its group (sesame's) may read it
    assert cli.main(["check", "-c", str(path)]) == 0
    assert "ok" in capsys.readouterr().out


def test_keygen_says_how_to_keep_the_server_config_private(capsys):
    assert cli.main(["keygen", "alice", "--door", "ssh", "--host", "192.0.2.1"]) == 0
    assert "chmod 640 /etc/sesame/sesame.toml" in capsys.readouterr().out


def test_check_and_import_read_fwknops_files(tmp_path, capsys):
    key = "JCsc4AAN+Z1Bwh95MQjaahA7mUXm29Ld8RKN86e8M20="
    access = tmp_path / "access.conf"
    access.write_text(f"SOURCE ANY\nOPEN_PORTS tcp/22\nKEY_BASE64 {key}\nHMAC_KEY __CHANGEME__\n")
    access.chmod(0o600)
    assert cli.main(["check", "--fwknop-access", str(access)]) == 2
    assert capsys.readouterr().err.startswith(f"{access}:4: HMAC_KEY is still __CHANGEME__")
    rc = tmp_path / "rc"
    rc.write_text(f"[default]\nKEY_BASE64 {key}\n\n[office]\nSPA_SERVER 192.0.2.7\nACCESS tcp/22\n")
    rc.chmod(0o600)
    assert cli.main(["import", "fwknop", str(rc)]) == 0
    out = capsys.readouterr().out
    assert '[[fwknop]]\nname = "office"\nkey_base64 = ' in out and 'access = "tcp/22"' in out
    # ... which `sesame knock --fwknop office` reads from the client config.
    client = tmp_path / "client.toml"
    client.write_text(out)
    client.chmod(0o600)
    argv = ["knock", "--fwknop", "office", "--client-config", str(client), "--print-packet"]
    assert cli.main([*argv, "-a", "192.0.2.1"]) == 0
    assert len(capsys.readouterr().out.strip()) > 100
    with pytest.raises(SystemExit):
        cli.main([*argv, "-M", "ecb"])
    assert "invalid choice: 'ecb'" in capsys.readouterr().err
