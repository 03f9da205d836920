"""The ``regtune`` command line. Errors are one line on stderr and a non-zero exit."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import sys
import warnings
from pathlib import Path
from typing import Any

import typer

from regtune.processes import python_command, safe_environment
from regtune.tracking.tracker import DEFAULT_TRACKING_URI
from regtune.tuning.settings import DEFAULT_STORAGE, DEFAULTS, TuneSettings, help_of

__all__ = ["app", "main"]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Find the regularization that makes a PyTorch network generalize.",
)

_DEBUG = "REGTUNE_DEBUG"
_INTERRUPTED = "interrupted; run the same command again to resume the study"


def _console():  # noqa: ANN202
    from rich.console import Console

    # Wide enough for the summary tables when output goes to a file or a CI log.
    return Console(width=None if sys.stdout.isatty() else 140)


def _setting(name: str, *decls: str, **kwargs: Any) -> Any:
    """The ``regtune tune`` option of setting ``name``: its default and help from
    :class:`~regtune.tuning.settings.TuneSettings` (``decls``: the option's name where it differs)."""
    return typer.Option(getattr(DEFAULTS, name), *decls, help=help_of(name), **kwargs)


def _parse_cohort(value: str | int) -> int | str:
    """``--cohort``: a whole number, or ``auto`` (TuneSettings says what is allowed)."""
    if not isinstance(value, str):  # the default
        return value
    return int(value) if value.strip().isdigit() else value.strip()


@app.command()
def tune(
    data: str = typer.Argument(..., help="CSV/Parquet/npz path, a folder of images in class sub-folders, or built-in: "
                                         "digits, breast_cancer, wine, iris, diabetes."),
    target: str | None = typer.Option(None, help="Target column of a file (default: the last column)."),
    space: str = _setting("space"),
    n_trials: int = _setting("n_trials", "--trials"),
    timeout: float | None = _setting("timeout"),
    pruner: str = _setting("pruner"),
    sampler: str = _setting("sampler"),
    metric: str | None = _setting("metric"),
    cv: str = _setting("cv"),
    storage: str | None = _setting("storage"),
    study_name: str | None = _setting("study_name", "--study"),
    experiment: str = _setting("experiment"),
    tracking_uri: str | None = _setting("tracking_uri"),
    n_jobs: int = _setting("n_jobs", "--jobs"),
    seed: int = _setting("seed"),
    device: str = _setting("device"),
    retry_failed: int = _setting("retry_failed"),
    heartbeat_interval: int | None = _setting("heartbeat_interval", "--heartbeat"),
    grace_period: int | None = _setting("grace_period", "--grace"),
    quiet: bool = typer.Option(not DEFAULTS.progress, "--quiet", "-q", help="No progress bar."),
    ensemble: int = _setting("ensemble"),
    cohort: object = _setting("cohort", parser=_parse_cohort, metavar="auto|K"),
    module: str | None = _setting("module", "--model"),
    module_arg: list[str] = typer.Option(  # noqa: B008
        [], "--module-arg", help="NAME=VALUE: a fixed constructor argument of --model (module__NAME); VALUE is read "
                                 "as YAML (64, 0.1, true, [64, 32]). Repeat for more."),
    register_model: str | None = _setting("register_model"),
) -> None:
    """Search the regularization for DATA, refit the best, compare with no regularization."""
    from regtune.cli.tables import print_tune_summary
    from regtune.data.loading import load_dataset
    from regtune.tuning.tuner import tune as run_tune

    settings = TuneSettings(
        space=space, n_trials=n_trials, timeout=timeout, sampler=sampler, pruner=pruner, metric=metric,
        cv=_parse_cv(cv), storage=storage, study_name=study_name, experiment=experiment, tracking_uri=tracking_uri,
        n_jobs=n_jobs, seed=seed, device=device, retry_failed=retry_failed, heartbeat_interval=heartbeat_interval,
        grace_period=grace_period, progress=not quiet, ensemble=ensemble, module=module, cohort=cohort,
        module_params=_parse_module_args(module_arg, module),
        register_model=register_model,
    )
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress bar and summary say it all
    console = _console()
    dataset = load_dataset(data, target)
    result = run_tune(dataset, settings=settings, console=console)
    print_tune_summary(result, console)


def _parse_module_args(values: list[str], model: str | None) -> dict[str, Any]:
    """``--module-arg NAME=VALUE`` options as ``{NAME: value}``, each value read as a YAML scalar or list."""
    import yaml

    params: dict[str, Any] = {}
    for item in values:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise typer.BadParameter(f"{item!r} must look like NAME=VALUE (e.g. hidden=[64,32] or p=0.1)",
                                     param_hint="'--module-arg'")
        if model is None:
            raise typer.BadParameter(f"{item!r} is an argument of your network's constructor: pass --model "
                                     "path/to/file.py:ClassName with it", param_hint="'--module-arg'")
        if name in params:
            raise typer.BadParameter(f"{name!r} is given twice", param_hint="'--module-arg'")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as exc:
            reason = " ".join(str(getattr(exc, "problem", None) or exc).split())
            raise typer.BadParameter(f"{item!r}: {text!r} is not a YAML value ({reason}); write e.g. "
                                     f"{name}=[64,32], {name}=0.1 or {name}=relu", param_hint="'--module-arg'") from None
        if value is None or isinstance(value, dict) or (
                isinstance(value, list) and any(isinstance(v, (list, dict)) or v is None for v in value)):
            raise typer.BadParameter(f"{item!r}: the value must be a number, a word, true/false or a list of "
                                     f"those (e.g. {name}=[64,32])", param_hint="'--module-arg'")
        params[name] = value
    return params


def _parse_cv(value: str) -> int | str:
    from regtune.data.split import parse_cv
    from regtune.exceptions import DataError

    try:
        return parse_cv(value)
    except DataError:
        raise typer.BadParameter(f"--cv {value!r} must be 'auto' or a whole number of folds, or RxK "
                                 "for R repeats of K folds (e.g. 2x3)") from None


@app.command()
def best(
    study: str = typer.Option(..., help="Study name."),
    storage: str | None = typer.Option(None, help="Optuna storage URL or journal file."),
) -> None:
    """Print the best trial of a study: value, parameters, MLflow run."""
    from regtune.cli.tables import print_best
    from regtune.tuning.storage import load_existing_study

    print_best(load_existing_study(study, storage), _console())


@app.command()
def predict(
    data: str = typer.Argument(..., help="CSV/Parquet/npz path, a folder of images, or built-in dataset name."),
    run: str = typer.Option(..., help="MLflow run id of a study's parent run (`regtune tune` and `regtune best` print it)."),
    tracking_uri: str | None = typer.Option(None, help=f"MLflow tracking URI (default {DEFAULT_TRACKING_URI})."),
    output: Path | None = typer.Option(None, help="Write predictions to this CSV instead of stdout."),  # noqa: B008
    proba: bool = typer.Option(False, help="Class probabilities instead of labels."),
) -> None:
    """Predict DATA with the best model logged by a study."""
    from regtune.cli.predict import check_output, predict_frame

    check_output(output)  # before loading anything
    frame = predict_frame(data, run, tracking_uri=tracking_uri, proba=proba)
    if output is None:
        frame.to_csv(sys.stdout, index=False)
        return
    try:
        frame.to_csv(output, index=False)
    except OSError as exc:  # e.g. the disk filled up
        raise typer.BadParameter(f"'{output}' cannot be written: {exc.strerror or exc}",
                                 param_hint="'--output'") from None
    typer.echo(f"wrote {len(frame)} predictions to {output}", err=True)


@app.command()
def spaces(name: str | None = typer.Argument(None, help="Print this space's YAML.")) -> None:
    """List the search spaces, or print one."""
    from rich.table import Table

    from regtune.space.space import SearchSpace

    console = _console()
    if name:
        console.print(SearchSpace.from_yaml(name).to_yaml_text(), markup=False, highlight=False)
        return
    table = Table(title="search spaces")
    for col in ("name", "description", "params", "regularizer families"):
        table.add_column(col)
    for space_name in SearchSpace.available():
        s = SearchSpace.from_yaml(space_name).summary()
        table.add_row(space_name, s["description"], str(s["params"]), ", ".join(s["families"]))
    console.print(table)


@app.command()
def ui(
    port: int = typer.Option(5000, help="Port."),
    host: str = typer.Option("127.0.0.1", help="Interface; loopback unless you mean to expose it."),
    tracking_uri: str | None = typer.Option(None, help=f"Backend store (default {DEFAULT_TRACKING_URI})."),
    allowed_hosts: str | None = typer.Option(
        None, help="More names other machines reach the UI by (comma-separated, * wildcards); this machine's "
        "name and addresses, localhost and private IPs are allowed already."),
) -> None:
    """Start the MLflow UI on the default local store."""
    from regtune.tracking.masking import mask_secrets
    from regtune.tracking.tracker import resolve_tracking_uri

    backend = resolve_tracking_uri(tracking_uri)
    artifacts = Path("mlruns").resolve()
    extra = [name.strip() for name in (allowed_hosts or "").split(",") if name.strip()]
    exposed = not _is_loopback(host)
    shown = socket.gethostname() if exposed and host in ("0.0.0.0", "::") else host
    typer.echo(
        f"MLflow UI for {mask_secrets(backend)}: http://{shown}:{port}/#/experiments "
        "(open an experiment's 'Model training' runs; Ctrl-C stops it)",
        err=True,
    )
    # Through the environment, not argv: any local user can read a process's arguments (ps).
    # One web worker and no background job runners: a local UI needs neither, and 2 cores are few.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ, "MLFLOW_BACKEND_STORE_URI": backend}
    env = safe_environment(env)  # the UI and its web workers import MLflow, not a mlflow.py lying here
    args = [*python_command(module="mlflow"), "ui", "--default-artifact-root", artifacts.as_uri(),
            "--host", host, "--port", str(port), "--workers", "1"]
    if exposed or extra:
        names = [*_own_names(host), *extra] if exposed else extra
        hosts, origins = _ui_access(names, port)
        args += ["--allowed-hosts", ",".join(hosts), "--cors-allowed-origins", ",".join(origins)]
    if exposed:
        typer.echo(
            f"regtune: warning: --host {host} serves the MLflow UI, which has no login, to every machine that can "
            f"reach port {port}; it answers as {', '.join(names[:3])}{', ...' if len(names) > 3 else ''}, "
            "localhost and private IPs; name others with --allowed-hosts",
            err=True,
        )
    os.execve(sys.executable, args, env)


@app.command()
def dashboard(
    study: str | None = typer.Option(None, help="Open this study's page (default: the list of studies)."),
    storage: str | None = typer.Option(None, help="Optuna storage URL or journal file, as given to `regtune tune` "
                                                 f"(default ./{DEFAULT_STORAGE})."),
    port: int = typer.Option(8080, help="Port (0: any free one)."),
    host: str = typer.Option("127.0.0.1", help="Interface; loopback unless you mean to expose it."),
) -> None:
    """Start optuna-dashboard on the study storage: trials, curves, importances, live."""
    from regtune.cli.dashboard import check_installed, dashboard_server, open_storage, serve
    from regtune.tracking.masking import mask_secrets

    check_installed()
    opened, page = open_storage(storage, study)
    server = dashboard_server(opened, host, port)
    exposed = not _is_loopback(host)
    shown = socket.gethostname() if exposed and host in ("0.0.0.0", "::") else host
    shown = f"[{shown}]" if ":" in shown else shown
    typer.echo(f"optuna-dashboard for {mask_secrets(storage or DEFAULT_STORAGE)}: "
               f"http://{shown}:{server.server_port}{page} (Ctrl-C stops it)", err=True)
    if exposed:
        typer.echo(f"regtune: warning: --host {host} serves optuna-dashboard, which has no login and can change "
                   f"studies, to every machine that can reach port {server.server_port}", err=True)
    serve(server)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: resolved by the server, maybe to a public interface


def _own_names(host: str) -> list[str]:
    """The names and addresses other machines use for this one: what the browser sends as Host."""
    names = [] if host in ("0.0.0.0", "::") else [host]
    names += [socket.gethostname(), socket.getfqdn()]
    with contextlib.suppress(OSError):
        names += [info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)]
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
        names.append(probe.getsockname()[0])
    return [n for n in dict.fromkeys(names) if n and not _is_loopback(n)]


def _ui_access(names: list[str], port: int) -> tuple[list[str], list[str]]:
    """MLflow's ``--allowed-hosts`` (its defaults, localhost and private IPs, plus ``names``) and
    ``--cors-allowed-origins`` for ``names``: without the origins, MLflow 3 refuses the UI's own
    POST requests from any browser not on this machine."""
    try:
        from mlflow.server.security_utils import get_default_allowed_hosts

        hosts = list(get_default_allowed_hosts())
    except ImportError:  # moved in another MLflow: keep loopback at least
        hosts = ["localhost", "localhost:*", "127.0.0.1", "127.0.0.1:*", "[::1]", "[[]::1]:*"]
    origins = []
    for name in names:
        if name.count(":") > 1 and not name.startswith("["):
            name = f"[{name}]"  # a bare IPv6 address, as a Host header writes it
        with_port = name if name.rpartition("]")[2].count(":") == 1 else f"{name}:{port}"
        hosts += dict.fromkeys([name, with_port])  # browsers send the port unless it is 80
        origins.append(f"http://{with_port}")
    return list(dict.fromkeys(hosts)), origins


def _register_extra_commands() -> None:
    from regtune.cli.analysis import register

    register(app)


_register_extra_commands()


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; turn every error into one line on stderr."""
    # Idle OpenMP threads sleep instead of spinning: spinning threads of small networks steal
    # the cores other trials and workers need (5x slower under load in benchmarks/).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from typer._click.exceptions import ClickException

    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # no INFO lines about its own tables
    command = typer.main.get_command(app)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _warning_line
            code = command.main(args=argv, prog_name="regtune", standalone_mode=False)
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except typer.Abort:
        _fail(_INTERRUPTED, 130)
    except ClickException as exc:
        message = " ".join(exc.format_message().split())
        if not message:  # `regtune` alone: click printed the help, there is no error to add
            raise SystemExit(exc.exit_code) from None
        _fail(message, exc.exit_code)
    except KeyboardInterrupt:
        _fail(_INTERRUPTED, 130)
    except Exception as exc:  # every user-facing error: one line, no traceback
        if os.environ.get(_DEBUG):
            raise
        from regtune.cli.errors import describe

        message, code = describe(exc)
        _fail(message, code)
    # Without standalone mode, typer *returns* exit codes: 130 is how it reports a Ctrl-C.
    if code == 130:
        _fail(_INTERRUPTED, 130)
    if isinstance(code, int) and not isinstance(code, bool) and code != 0:
        raise SystemExit(code)


def _warning_line(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    """A warning as one line on stderr, like the errors (no source file and line)."""
    print(f"regtune: warning: {message}", file=sys.stderr)


def _fail(message: str, code: int) -> None:
    from regtune.tracking.masking import mask_secrets

    print(f"regtune: error: {mask_secrets(message)}", file=sys.stderr)
    raise SystemExit(code)


if __name__ == "__main__":
    main()
