"""The `farm` CLI: consistent help, and one clear line on stderr with exit code 2 for bad input."""

import argparse
import io
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest
from rich.table import Table

from farm import cli
from farm.cli import build_parser, main, progress

COMMANDS = [
    [],
    ["quickstart"],
    ["train"],
    ["registry"],
    ["registry", "ls"],
    ["registry", "show"],
    ["registry", "promote"],
    ["registry", "ui"],
    ["campaign"],
    ["campaign", "submit"],
    ["campaign", "status"],
    ["campaign", "ls"],
    ["campaign", "cancel"],
    ["campaign", "resume"],
    ["evaluate"],
    ["data"],
    ["data", "showers"],
    ["data", "jets"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) or "farm" for c in COMMANDS])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: farm") and len(text.splitlines()) > 3


def run(args, tmp_path, **env):
    return subprocess.run(
        [sys.executable, "-m", "farm.cli", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "FARM_HOME": str(tmp_path / "home"),
            **env,
        },
        timeout=120,
    )


def one_error_line(result) -> str:
    assert result.returncode == 2, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("farm: error: ")
    return lines[0]


def test_bad_input_gets_one_line(tmp_path):
    (tmp_path / "malformed.yaml").write_text("kind: train\nname: [x\n")
    (tmp_path / "unknown.yaml").write_text("kind: train\nname: x\noptim: {lrr: 1}\n")
    (tmp_path / "negative.yaml").write_text(
        "kind: campaign\nname: c\nmodel: m@candidate\nevents: -3\n"
        "conditions: {distribution: uniform, min: 1, max: 2}\n"
    )
    cases = [
        (["train", "absent.yaml"], "absent.yaml: job file not found"),
        (["train", "malformed.yaml"], "malformed.yaml: malformed YAML at line 3, column 1"),
        (["train", "unknown.yaml"], "unknown.yaml: unknown key 'optim.lrr' (allowed:"),
        (["campaign", "submit", "negative.yaml"], "events: Input should be greater than 0"),
        (["campaign", "status", "nope"], "campaign 'nope' not found"),
        (["registry", "show", "nope@candidate"], "model 'nope' not found in the registry"),
        (["quickstart", "--campaign-events", "0"], "--campaign-events must be positive"),
    ]
    for args, message in cases:
        assert message in one_error_line(run(args, tmp_path)), args
    # nothing half-written: no job produced a final output
    assert not (tmp_path / "home" / "campaigns").exists()


def test_unreachable_object_store_is_one_line(tmp_path):
    env = {"AWS_EC2_METADATA_DISABLED": "true", "FARM_S3_ENDPOINT_URL": "http://127.0.0.1:9"}
    result = run(["evaluate", "s3://nobucket/gen.h5", "s3://nobucket/ref.h5"], tmp_path, **env)
    assert one_error_line(result).startswith("farm: error: storage: ")


def test_unwritable_store(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    line = one_error_line(run(["quickstart"], tmp_path, FARM_HOME=str(blocker / "home")))
    assert "store is not writable" in line


def test_main_returns_exit_code(farm_home, capsys):
    assert main(["registry", "ls"]) == 0
    assert "no registered models yet" in capsys.readouterr().out


# ---- groups, help -----------------------------------------------------------------------------


def walk_parsers(parser, path=("farm",)):
    """Yield (command path, parser) for the parser and every subcommand under it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from walk_parsers(child, (*path, name))


GROUPS_WITH_ACTIONS = [
    ([], "needs a command: quickstart, data, train, tune, registry, campaign, generate, evaluate"),
    (["campaign"], "farm campaign needs an action: submit, status, ls, cancel, resume, validate"),
    (["registry"], "farm registry needs an action: ls, show, promote, ui"),
    (["data"], "farm data needs a kind: showers, jets"),
]


@pytest.mark.parametrize("argv,expected", GROUPS_WITH_ACTIONS, ids=lambda v: " ".join(v))
def test_group_without_action_lists_its_actions(argv, expected, capsys):
    assert main(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("farm: error: farm")
    assert expected in lines[0]
    assert "--help` for details" in lines[0]


def test_actions_still_reach_their_handlers():
    args = build_parser().parse_args(["campaign", "status", "abc", "--json"])
    assert args.handler.__name__ == "run_status" and args.id == "abc" and args.json


def test_every_argument_is_described():
    undescribed = [
        f"{' '.join(path)} {action.dest}"
        for path, parser in walk_parsers(build_parser())
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction | argparse._SubParsersAction)
        and not action.help
    ]
    assert undescribed == []


def test_ui_port_and_campaign_status_help(capsys):
    for argv in (["registry", "ui"], ["campaign", "status"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args([*argv, "--help"])
    text = capsys.readouterr().out
    assert "--port PORT  TCP port on 127.0.0.1" in text
    assert "campaign id, as printed by `submit`" in text and "print the status as JSON" in text


def test_every_group_is_a_real_module(monkeypatch):
    listed = {path[1] for path, _ in walk_parsers(build_parser()) if len(path) == 2}
    assert listed == set(cli.GROUPS)
    monkeypatch.setattr(cli, "GROUPS", (*cli.GROUPS, "no_such_group"))
    with pytest.raises(ModuleNotFoundError, match=r"farm\.cli\.no_such_group"):
        build_parser()


# ---- output to a log: no wrapping at 80 columns ------------------------------------------------


def test_log_output_keeps_a_long_path_on_one_line(tmp_path):
    home = tmp_path / ("store-" + "a" * 50) / ("b" * 50) / "farm-home"
    uri = f"sqlite:///{home}/mlflow.db"
    assert len(uri) > 150
    result = run(["registry", "ls"], tmp_path, FARM_HOME=str(home))  # stdout is a pipe
    assert result.returncode == 0, result.stderr
    lines = [ln for ln in result.stdout.splitlines() if ln.strip()]
    assert lines == [
        f"no registered models yet in {uri}: run `farm train JOB.yaml` or `farm quickstart`"
    ]


def test_log_console_is_wide_and_soft_wrapped(monkeypatch, capsys):
    monkeypatch.delenv("COLUMNS", raising=False)
    log = progress.make_console()  # pytest's captured stdout is not a terminal
    assert log.soft_wrap and log.width == progress.LOG_WIDTH
    path = "/data/" + "/".join(["campaign-output-folder"] * 7) + "/manifest.parquet"
    table = Table("name", "url")
    table.add_row("parquet", path)
    log.print(f"  manifest: {path}")
    log.print(table)
    text = capsys.readouterr().out
    assert f"  manifest: {path}\n" in text
    assert sum(path in line for line in text.splitlines()) == 2  # the table's cell is whole too


class FakeTerminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        """Claim to be a terminal."""
        return True


def test_terminal_console_wraps_tables_to_the_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stdout", FakeTerminal())
    monkeypatch.setenv("COLUMNS", "72")
    terminal = progress.make_console()
    assert not terminal.soft_wrap and terminal.width == 72
    table = Table("name", "url")
    table.add_row("parquet", "/data/" + "x" * 150)
    terminal.print(table)
    text = re.sub(r"\x1b\[[0-9;]*m", "", sys.stdout.getvalue())  # colour codes take no columns
    assert "/data/xxx" in text and max(len(line) for line in text.splitlines()) <= 72


def test_explicit_columns_sets_the_log_width(monkeypatch):
    monkeypatch.setenv("COLUMNS", "132")
    log = progress.make_console()
    assert log.soft_wrap and log.width == 132


# ---- farm data --out: a folder of shards, never a folder named like a file ---------------------

FILE_NAMED_OUTS = [
    (["showers", "--out", "x.parquet"], "--out x.parquet: ends in .parquet, so it names a file"),
    (["showers", "--out", "x.parquet", "--format", "h5"], "--format parquet"),
    (
        ["showers", "--out", "out/x.HDF5/"],
        "e.g. --out x, and choose the file type with --format h5",
    ),
    (["jets", "--process", "top", "--n", "5", "--out", "x.h5"], "writes a folder of shard files"),
    (["jets", "--process", "top", "--n", "5", "--out", "s3://b/jets.parquet"], "e.g. --out jets"),
]


@pytest.mark.parametrize("argv,expected", FILE_NAMED_OUTS, ids=lambda v: " ".join(v))
def test_data_out_naming_a_file_is_refused(argv, expected, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["data", *argv, "--shard-size", "2"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("farm: error: --out ")
    assert expected in lines[0]
    assert list(tmp_path.iterdir()) == []  # no folder named x.parquet, nothing else


def test_data_showers_out_help_says_folder(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["data", "showers", "--help"])
    assert "not a file name such as x.h5 or x.parquet" in " ".join(capsys.readouterr().out.split())


# ---- Ray's token-authentication notice ---------------------------------------------------------


def test_local_ray_starts_without_the_auth_notice_and_keeps_token_auth(tmp_path):
    out = tmp_path / "showers"
    args = ["data", "showers", "--n", "4", "--shard-size", "2", "--workers", "1"]
    result = run([*args, "--format", "parquet", "--out", str(out)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Token authentication" not in result.stderr + result.stdout
    assert sorted(p.name for p in out.glob("*.parquet")) == [
        "showers-ds1-photons-00000.parquet",
        "showers-ds1-photons-00001.parquet",
    ]
    assert (tmp_path / ".ray" / "auth_token").read_text()  # Ray made its token: auth stays on


class Records(logging.Handler):
    """Keeps the messages of the records it is given."""

    def __init__(self) -> None:
        """An empty list of messages."""
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the record's message."""
        self.messages.append(record.getMessage())


def test_auth_notice_filter_drops_only_the_notice(monkeypatch):
    from ray._private.authentication import authentication_token_setup as auth

    from farm import ray_utils

    logger = logging.getLogger(ray_utils.AUTH_LOGGER)
    assert auth.logger is logger
    records = Records()
    monkeypatch.setattr(logger, "filters", [])
    monkeypatch.setattr(logger, "handlers", [records])
    monkeypatch.setattr(logger, "propagate", False)
    ray_utils.hide_auth_notice()
    ray_utils.hide_auth_notice()  # idempotent
    assert len(logger.filters) == 1
    auth._warn_token_auth_enabled()  # Ray's own notice, as ray.init logs it
    auth._warn_token_auth_disabled()  # another warning of the same logger still shows
    assert len(records.messages) == 1
    assert records.messages[0].startswith("Token authentication is disabled")


@pytest.mark.parametrize("joins", [False, True])
def test_ensure_ray_leaves_the_users_auth_settings(joins, monkeypatch):
    import ray

    from farm import ray_utils

    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    head = socket.create_server(("127.0.0.1", 0))  # a listening "head": the address is reachable
    address = f"ray://127.0.0.1:{head.getsockname()[1]}" if joins else "local"
    env = {"RAY_ADDRESS": address} if joins else {"RAY_AUTH_MODE": "disabled"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    with head:
        ray_utils.ensure_ray(num_cpus=1)
    assert calls[0]["address"] == address
    assert os.environ.get("RAY_AUTH_MODE") == env.get("RAY_AUTH_MODE")


# ---- farm registry ui: the MLflow server ends with farm ----------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_answers(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:port."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    """The processes that still run (zombies, which hold nothing, do not count)."""
    return [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def wait_until(predicate, timeout_s: float) -> bool:
    """Poll predicate every 0.2 s until it holds or timeout_s passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_ends_the_servers_whole_process_group(signum, tmp_path):
    # a stand-in server with a child of its own, as mlflow ui has uvicorn and huey workers
    server = (
        "import subprocess, sys, time;"
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        "print(c.pid, flush=True); time.sleep(60)"
    )
    driver = (
        "import sys; from farm.cli.registry import serve_until_stopped;"
        f"sys.exit(serve_until_stopped([sys.executable, '-c', {server!r}]))"
    )
    farm = subprocess.Popen(
        [sys.executable, "-c", driver], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    family: list[psutil.Process] = []
    try:
        grandchild = psutil.Process(int(farm.stdout.readline()))
        family = psutil.Process(farm.pid).children(recursive=True)
        assert grandchild in family and len(family) == 2
        farm.send_signal(signum)
        assert farm.wait(timeout=10) == 128 + signum
        assert wait_until(lambda: not alive(family), 5)
        assert f"MLflow UI stopped ({signal.Signals(signum).name})" in farm.stderr.read()
    finally:
        for p in alive(family):
            p.kill()
        farm.kill()


def farm_env(home) -> dict[str, str]:
    """This environment with FARM_HOME set and no shared MLflow server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return {**env, "FARM_HOME": str(home)}


def test_sigterm_to_registry_ui_stops_the_mlflow_server(tmp_path):
    port = free_port()
    farm = subprocess.Popen(
        [sys.executable, "-m", "farm.cli", "registry", "ui", "--port", str(port)],
        cwd=tmp_path,
        env=farm_env(tmp_path / "home"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    family: list[psutil.Process] = []
    try:
        assert wait_until(lambda: port_answers(port) or farm.poll() is not None, 120)
        assert farm.poll() is None, farm.stderr.read()
        family = psutil.Process(farm.pid).children(recursive=True)
        names = " ".join(" ".join(p.cmdline()) for p in family)
        assert "mlflow" in names and "uvicorn" in names
        farm.terminate()  # SIGTERM, as `kill PID`
        assert farm.wait(timeout=20) == 128 + signal.SIGTERM
        assert wait_until(lambda: not alive(family) and not port_answers(port), 5)
    finally:
        for p in alive(family):
            p.kill()
        farm.kill()


# ---- SIGTERM ----------------------------------------------------------------------------------


def _parser_whose_handler(handler):
    """farm's parser with `registry ls` calling `handler` instead."""

    def build():
        parser = build_parser()
        parser.set_defaults(handler=handler)
        return parser

    return build


@pytest.fixture
def sigterm_flag():
    """farm.cli's SIGTERM flag clear and SIGTERM's default action, as in a fresh `farm` process.

    Both are per process: a Ray session an earlier test started leaves its own SIGTERM handler.
    """
    before = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    cli._SIGTERM_SEEN.clear()
    yield cli._SIGTERM_SEEN
    cli._SIGTERM_SEEN.clear()
    signal.signal(signal.SIGTERM, before)


def test_sigterm_that_ray_turned_into_a_plain_keyboard_interrupt_still_exits_143(
    monkeypatch, capsys, sigterm_flag
):
    """ray.get catches the Stopped a SIGTERM raises and raises a plain KeyboardInterrupt."""

    def blocked_in_ray(args):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises here
        except KeyboardInterrupt:
            raise KeyboardInterrupt from None
        raise AssertionError("SIGTERM was not delivered")

    monkeypatch.setattr(cli, "build_parser", _parser_whose_handler(blocked_in_ray))
    assert main([]) == 128 + signal.SIGTERM
    assert "farm: stopped (SIGTERM)" in capsys.readouterr().err


def test_ctrl_c_without_a_sigterm_is_interrupted(monkeypatch, capsys, sigterm_flag):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", _parser_whose_handler(interrupted))
    assert main([]) == 130
    assert "farm: interrupted" in capsys.readouterr().err
