"""The targets file: the documented example parses; every mistake names file, target and key."""

import sys
from pathlib import Path

import pytest

from app.settings import SettingsError
from app.targets.config import TargetsFileError, parse_targets
from tests.support.apps import build_app

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "targets.example.toml"
ENV = {"PRODUCTION_DATABASE_URL": "postgresql://app:pg-pass-123@db/app", "BACKUP_PASSPHRASE": "gpg-pass-456"}


def parse(text: str, env=None):
    return parse_targets(text, Path("/etc/rewind/targets.toml"), ENV if env is None else env)


def test_documented_example_parses_with_every_key():
    targets = parse_targets(EXAMPLE.read_text(), EXAMPLE, ENV)
    assert sorted(targets) == ["production", "staging"]
    prod = targets["production"]
    assert prod.protected and not prod.auto_rollback
    assert (prod.repo.path, prod.repo.branch, prod.repo.remote) == (Path("/srv/app"), "main", "origin")
    assert prod.process.restart == ("sudo", "systemctl", "restart", "app") and not prod.process.managed
    assert prod.process.status == ("systemctl", "is-active", "--quiet", "app")
    assert prod.health.json == {"status": "healthy"} and prod.health.timeout == 30.0
    assert prod.health.failure_threshold == 3 and prod.health.probe_timeout == 2.0
    assert prod.database.url == ENV["PRODUCTION_DATABASE_URL"]
    assert prod.database.key_tables == ("users", "sessions", "segments")
    assert prod.database.flags_table == "feature_flags"
    assert prod.database.flags_columns.enabled == "enabled" and prod.database.flags_columns.tag is None
    assert prod.backups.recipients == ("ops@example.com",) and prod.env_file == Path("/srv/app/.env")
    assert set(prod.bluegreen.slots) == {"blue", "green"}
    assert prod.release.commands[0] == ("/srv/app/.venv/bin/pip", "install", "-r", "requirements.txt")
    assert len(prod.release.commands) == 2 and prod.release.timeout == 600.0
    assert set(prod.secrets) == {"postgresql://app:pg-pass-123@db/app"}
    assert targets["staging"].auto_rollback and targets["staging"].health.status == 200


def test_managed_process_and_relative_paths():
    text = """
[targets.demo.repo]
path = "apps/demo"
[targets.demo.process]
command = ["python", "-m", "flask", "run"]
cwd = "apps/demo"
"""
    demo = parse(text)["demo"]
    assert demo.process.managed and demo.repo.path == Path("/etc/rewind/apps/demo")


@pytest.mark.parametrize(
    "text, target, key, problem",
    [
        ("[targets.a]\nprotected = true\n", "a", "repo", "is required"),
        ('[targets.a.repo]\npath = "/x"\nbrnch = "main"\n', "a", "repo.brnch", "did you mean 'branch'"),
        (
            '[targets.a.repo]\npath = "/x"\n[targets.a.process]\nrestart = "systemctl restart app"\n',
            "a",
            "process.restart",
            "never a shell line",
        ),
        (
            '[targets.a.repo]\npath = "/x"\n[targets.a.process]\nstart = ["x"]\n',
            "a",
            "process.restart",
            "give restart, or start and stop",
        ),
        (
            '[targets.a.repo]\npath = "/x"\n[targets.a.health]\nurl = "ftp://x"\n',
            "a",
            "health.url",
            "http:// or https://",
        ),
        (
            '[targets.a.repo]\npath = "/x"\n[targets.a.health]\nurl = "http://ops:pw-in-url@x/health"\n',
            "a",
            "health.url",
            "must hold no user or password (http://…@x)",
        ),
        (
            '[targets.a.repo]\npath = "/x"\n[targets.a.health]\nurl = "http://x:99999/health"\n',
            "a",
            "health.url",
            "invalid port",
        ),
        (
            '[targets.a.repo]\npath = "/x"\n[targets.a.bluegreen]\nswitch = ["s"]\n'
            'slots = {blue = "http://u:pw-in-url@b/h", green = "http://g/h"}\n',
            "a",
            "bluegreen.slots",
            "must hold no user or password",
        ),
        (
            '[targets.a.repo]\npath = "/x"\n[targets.a.health]\nurl = "http://x"\nstatus = "ok"\n',
            "a",
            "health.status",
            "expected int",
        ),
        (
            '[targets.a.repo]\npath = "/x"\n[targets.a.database]\nurl = "env:NOPE"\n',
            "a",
            "database.url",
            "environment variable NOPE is not set",
        ),
        (
            '[targets.a.repo]\npath = "/x"\n[targets.a.process]\nrestart = ["x"]\nstatus = "systemctl is-active app"\n',
            "a",
            "process.status",
            "never a shell line",
        ),
        (
            '[targets.a.repo]\npath = "/x"\n[targets.a.process]\ncommand = ["gunicorn"]\nstatus = ["true"]\n',
            "a",
            "process.status",
            "Rewind knows a managed process from its pid file",
        ),
        (
            '[targets.a.repo]\npath = "/x"\n[targets.a.process]\nrestart = ["x"]\nstatsu = ["true"]\n',
            "a",
            "process.statsu",
            "did you mean 'status'",
        ),
        (
            '[targets.a.repo]\npath = "/x"\n[targets.a.health]\nurl = "http://x"\nfailure_threshold = 0\n',
            "a",
            "health.failure_threshold",
            "a count of probes, 1 or more",
        ),
        (
            '[targets.a.repo]\npath = "/x"\n[targets.a.health]\nurl = "http://x"\nfailure_threshold = 2.5\n',
            "a",
            "health.failure_threshold",
            "expected int",
        ),
        (
            '[targets.a.repo]\npath = "/x"\n[targets.a.health]\nurl = "http://x"\ntimeout = 10\nprobe_timeout = 15\n',
            "a",
            "health.probe_timeout",
            "must be more than 0 seconds and at most health.timeout (10), got 15",
        ),
        (
            '[targets.a.repo]\npath = "/x"\n[targets.a.health]\nurl = "http://x"\ncommit_field = "build..sha"\n',
            "a",
            "health.commit_field",
            "expected a JSON field name, dots between nested ones; got 'build..sha'",
        ),
        (
            '[targets.a.repo]\npath = "/x"\n[targets.a.health]\nurl = "http://x"\ncommit_field = 7\n',
            "a",
            "health.commit_field",
            "expected str",
        ),
        (
            '[targets.a.repo]\npath = "/x"\n[targets.a.health]\nurl = "http://x"\nprobe_timeout = 0\n',
            "a",
            "health.probe_timeout",
            "must be more than 0 seconds",
        ),
        (
            '[targets.a.repo]\npath = "/x"\n[targets.a.health]\nurl = "http://x"\nprobe_timeout = "5s"\n',
            "a",
            "health.probe_timeout",
            "expected float",
        ),
        (
            '[targets.a.repo]\npath = "/x"\n[targets.a.process]\ncommand = ["x"]\nstop_timeout = 0\n',
            "a",
            "process.stop_timeout",
            "must be more than 0 seconds",
        ),
        (
            '[targets.a.repo]\npath = "/x"\n[targets.a.process]\nrestart = ["x"]\nstop_timeout = 30\n',
            "a",
            "process.stop_timeout",
            "belongs to a managed process",
        ),
        (
            '[targets.a.repo]\npath = "/x"\n[targets.a.health]\nurl = "http://x"\nca_file = "/etc/ca.pem"\n',
            "a",
            "health.ca_file",
            "only used with an https:// health URL",
        ),
        (
            '[targets.a.repo]\npath = "/x"\n[targets.a.database]\nurl = "sqlite:///x"\n'
            '[targets.a.database.flags_columns]\nname = "n"\n',
            "a",
            "database.flags_columns",
            "set flags_table too",
        ),
        (
            '[targets.a.repo]\npath = "/x"\n[targets.a.database]\nurl = "sqlite:///x"\nflags_table = "f"\n'
            '[targets.a.database.flags_columns]\nenabld = "on"\n',
            "a",
            "database.flags_columns.enabld",
            "did you mean 'enabled'?",
        ),
        (
            '[targets.a.repo]\npath = "/x"\n[targets.a.database]\nurl = "sqlite:///x"\nflags_table = "f"\n'
            '[targets.a.database.flags_columns]\nenabled = ""\n',
            "a",
            "database.flags_columns.enabled",
            "must not be empty",
        ),
        ('[targets.a]\nauto_rollback = "yes"\n[targets.a.repo]\npath = "/x"\n', "a", "auto_rollback", "expected bool"),
        (
            '[targets.a.repo]\npath = "/x"\n[targets.a.process]\ncommand = ["gunicorn"]\nreload = "HUPP"\n',
            "a",
            "process.reload",
            'like "HUP" for gunicorn',
        ),
        (
            '[targets.a.repo]\npath = "/x"\n[targets.a.process]\ncommand = ["gunicorn"]\nreload = "KILL"\n',
            "a",
            "process.reload",
            "expected the name of the signal that makes the application reload",
        ),
        (
            '[targets.a.repo]\npath = "/x"\n[targets.a.process]\ncommand = ["gunicorn"]\nreload = 1\n',
            "a",
            "process.reload",
            "expected str",
        ),
        (
            '[targets.a.repo]\npath = "/x"\n[targets.a.process]\nrestart = ["x"]\nreload = "HUP"\n',
            "a",
            "process.reload",
            "belongs to a managed process",
        ),
        (
            '[targets.a.repo]\npath = "/x"\n[targets.a.release]\ncommands = ["pip install -r requirements.txt"]\n',
            "a",
            "release.commands",
            "never a shell line",
        ),
        (
            '[targets.a.repo]\npath = "/x"\n[targets.a.release]\ncommands = "pip install"\n',
            "a",
            "release.commands",
            "expected list",
        ),
        ('[targets.a.repo]\npath = "/x"\n[targets.a.release]\ncommands = []\n', "a", "release.commands", "is empty"),
        (
            '[targets.a.repo]\npath = "/x"\n[targets.a.release]\ncommands = [["pip"], []]\n',
            "a",
            "release.commands",
            "command 2 is not a non-empty list",
        ),
        (
            '[targets.a.repo]\npath = "/x"\n[targets.a.release]\ncommands = [["pip", 3]]\n',
            "a",
            "release.commands",
            "command 1 holds an argument that is not a non-empty string",
        ),
        ('[targets.a.repo]\npath = "/x"\n[targets.a.release]\ntimeout = 5\n', "a", "release.commands", "is required"),
        (
            '[targets.a.repo]\npath = "/x"\n[targets.a.release]\ncommands = [["true"]]\ntimeout = 0\n',
            "a",
            "release.timeout",
            "more than 0 seconds",
        ),
        (
            '[targets.a.repo]\npath = "/x"\n[targets.a.release]\ncommands = [["true"]]\ntimout = 5\n',
            "a",
            "release.timout",
            "did you mean 'timeout'",
        ),
        ('[targets."Bad!".repo]\npath = "/x"\n', "Bad!", None, "lower-case letters"),
        ('[targets."-prod".repo]\npath = "/x"\n', "-prod", None, "starts with a letter or digit"),
    ],
)
def test_errors_name_file_target_and_key(text, target, key, problem):
    with pytest.raises(TargetsFileError) as caught:
        parse(text)
    error = caught.value
    assert "pw-in-url" not in str(error), "a password in a URL is never echoed"
    assert (error.target, error.key) == (target, key)
    assert str(error).startswith(f"/etc/rewind/targets.toml: target {target!r}")
    assert problem in str(error)


def test_file_level_errors():
    with pytest.raises(TargetsFileError, match="not valid TOML"):
        parse("[targets.a\n")
    with pytest.raises(TargetsFileError, match="unknown top-level key 'target'"):
        parse('[target.a.repo]\npath = "/x"\n')


def test_a_bad_targets_file_stops_start_up_with_one_line(tmp_path):
    (tmp_path / "rewind.toml").write_text('[targets.a.repo]\npath = "/x"\nbrnch = "main"\n')
    with pytest.raises(SettingsError) as caught:
        build_app(tmp_path)
    assert str(caught.value).startswith("REWIND_CONFIG: ")
    assert "target 'a': key 'repo.brnch': unknown key" in str(caught.value)


def test_a_status_command_reaches_the_process_control(tmp_path):
    """Without it a command-controlled target could only ever show "state unknown"."""
    from app.targets.target import Target

    text = f"""
[targets.a.repo]
path = "/x"
[targets.a.process]
restart = ["true"]
status = ["{sys.executable}", "-c", "print('active (running)')"]
[targets.a.health]
url = "http://127.0.0.1:1/health"
failure_threshold = 5
"""
    target = Target(parse(text)["a"], tmp_path)
    status = target.process().status()
    assert status.running is True and status.note == "active (running)"
    assert target.health().failure_threshold == 5
    unknown = Target(parse(text.replace("status = ", "# status = "))["a"], tmp_path).process().status()
    assert unknown.running is None


def test_release_commands_and_reload_signal(tmp_path):
    from app.targets.target import Target

    text = """
[targets.a.repo]
path = "/x"
[targets.a.process]
command = ["gunicorn", "wsgi:app"]
reload = "hup"
[targets.a.release]
commands = [["pip", "install", "-r", "requirements.txt"], ["flask", "translate", "compile", "env:LANGS"]]
timeout = 120
"""
    config = parse(text, {"LANGS": "fr"})["a"]
    assert config.process.reload == "SIGHUP"
    assert config.release.commands == (
        ("pip", "install", "-r", "requirements.txt"),
        ("flask", "translate", "compile", "fr"),
    )
    assert config.release.timeout == 120.0
    assert Target(config, tmp_path).process().reload_signal.name == "SIGHUP"
    plain = parse(text.replace('reload = "hup"', "").replace("timeout = 120", ""), {"LANGS": "fr"})["a"]
    assert plain.process.reload is None and plain.release.timeout == 600.0
    assert Target(plain, tmp_path).process().reload_signal is None


def test_flags_columns_override_only_what_they_name():
    targets = parse(
        '[targets.a.repo]\npath = "/x"\n[targets.a.database]\nurl = "sqlite:///x"\nflags_table = "toggles"\n'
        '[targets.a.database.flags_columns]\nenabled = "is_on"\ntag = "team"\n'
    )
    columns = targets["a"].database.flags_columns
    assert (columns.name, columns.enabled, columns.description, columns.updated_at, columns.tag) == (
        "name",
        "is_on",
        "description",
        "updated_at",
        "team",
    )


def test_a_health_ca_file_is_read_relative_to_the_targets_file_and_reaches_the_check(tmp_path):
    from app.targets.target import Target

    text = '[targets.a.repo]\npath = "/x"\n[targets.a.health]\nurl = "https://127.0.0.1:1/health"\nca_file = "ca.pem"\n'
    config = parse(text)["a"]
    assert config.health.ca_file == Path("/etc/rewind/ca.pem")
    probe = Target(config, tmp_path).health().probe()
    assert not probe.ok and "health.ca_file /etc/rewind/ca.pem cannot be used" in probe.reason


def test_a_managed_processs_stop_timeout_reaches_it(tmp_path):
    from app.targets.target import Target

    text = '[targets.a.repo]\npath = "/x"\n[targets.a.process]\ncommand = ["x"]\nstop_timeout = 35\n'
    assert Target(parse(text)["a"], tmp_path).process().stop_timeout == 35.0
    assert Target(parse(text.replace("stop_timeout = 35\n", ""))["a"], tmp_path).process().stop_timeout == 10.0


def test_a_health_probe_timeout_reaches_the_check_and_fits_in_a_shorter_timeout(tmp_path):
    from app.targets.target import Target

    base = '[targets.a.repo]\npath = "/x"\n[targets.a.health]\nurl = "http://127.0.0.1:1/health"\n'
    assert Target(parse(base)["a"], tmp_path).health().request_timeout_s == 2.0
    slow = Target(parse(base + "timeout = 120\nprobe_timeout = 10\n")["a"], tmp_path).health()
    assert (slow.timeout_s, slow.request_timeout_s) == (120.0, 10.0)
    short = parse(base + "timeout = 1\n")["a"].health  # a timeout under the default probe's: one probe may use it all
    assert (short.timeout, short.probe_timeout) == (1.0, 1.0)


def test_a_passphrase_read_through_env_is_in_no_repr_of_the_config():
    text = EXAMPLE.read_text().replace('# passphrase = "env:BACKUP_PASSPHRASE"', 'passphrase = "env:BACKUP_PASSPHRASE"')
    prod = parse_targets(text, EXAMPLE, ENV)["production"]
    assert prod.backups.passphrase == ENV["BACKUP_PASSPHRASE"]
    assert ENV["BACKUP_PASSPHRASE"] in prod.secrets  # still masked in every job log
    assert ENV["BACKUP_PASSPHRASE"] not in repr(prod) and ENV["BACKUP_PASSPHRASE"] not in repr(prod.backups)


def test_an_sqlalchemy_url_with_a_driver_is_read_without_it_and_masked_in_both_forms(tmp_path):
    """A Flask-SQLAlchemy app on psycopg 3 writes postgresql+psycopg:// in its .env; envfile:DATABASE_URL reads it."""
    (tmp_path / "app.env").write_text("DATABASE_URL=postgresql+psycopg://shop:sh0p-pass@127.0.0.1:5432/shop\n")
    text = f"""
[targets.shop]
env_file = "{tmp_path / "app.env"}"
[targets.shop.repo]
path = "{tmp_path}"
[targets.shop.database]
url = "envfile:DATABASE_URL"
"""
    shop = parse_targets(text, tmp_path / "targets.toml", {})["shop"]
    assert shop.database.url == "postgresql://shop:sh0p-pass@127.0.0.1:5432/shop"
    assert shop.database.url in shop.secrets  # what Rewind's own logs may echo is masked
    assert "postgresql+psycopg://shop:sh0p-pass@127.0.0.1:5432/shop" in shop.secrets


def test_start_stop_and_status_commands_run_in_the_checkout(tmp_path):
    # A start script named relative to the checkout (as release and smoke commands are) must not depend on the
    # folder Rewind itself was started from.
    from app.targets.target import Target

    repo = tmp_path / "app"
    repo.mkdir()
    (repo / "start.py").write_text("open('app.pid', 'w').write('1')\n")
    text = f"""
[targets.a.repo]
path = "{repo}"
[targets.a.process]
start = ["{sys.executable}", "start.py"]
stop = ["rm", "app.pid"]
status = ["test", "-e", "app.pid"]
"""
    control = Target(parse(text)["a"], tmp_path).process()
    assert control.status().running is False
    control.start()
    assert (repo / "app.pid").exists() and control.status().running is True
    control.stop()
    assert not (repo / "app.pid").exists() and control.status().running is False
    elsewhere = tmp_path / "run"
    elsewhere.mkdir()
    moved = text.replace("[targets.a.process]\n", f'[targets.a.process]\ncwd = "{elsewhere}"\n')
    assert Target(parse(moved)["a"], tmp_path).process().cwd == str(elsewhere)
