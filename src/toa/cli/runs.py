"""`toa run`, `toa resume`, `toa status` and `toa priors`: start, continue and read runs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from toa.cli.common import console, fail, print_report, run_with_interrupt
from toa.errors import ConfigError, StoreError, TOAError
from toa.search.names import STRATEGY_NAMES

if TYPE_CHECKING:
    from toa.engine.runner import RunReport
    from toa.settings import RunSettings


_RERUN_CHANGED = typer.Option(
    "--rerun-changed",
    help="Run again the finished prompts whose content changed in the input since they ran, "
    "discarding their old results (without it, such a change is refused).",
)


_BACKEND = typer.Option(
    "--backend", help="local (this process) or ray (Ray worker actors; sets runner.backend)."
)
_WORKERS = typer.Option("--workers", help="Ray worker actors (sets runner.workers).", min=1)
_RAY_ADDRESS = typer.Option(
    "--ray-address",
    help="The Ray cluster: auto or HOST:PORT (default: a local Ray started for the run).",
)


def _execute(
    settings: RunSettings,
    *,
    input_path: Path,
    run_dir: Path,
    prompt_field: str | None,
    limit: int | None,
    force: bool = False,
    rerun_changed: bool = False,
) -> None:
    from toa.engine.preflight import check_start

    # The same checks `run` makes first, before the progress display takes the terminal.
    check_start(settings, input_path=input_path, run_dir=run_dir, force=force)
    try:
        report = _run_with_progress(
            settings, input_path, run_dir, prompt_field, limit, force, rerun_changed
        )
    except StoreError as error:
        if (run_dir / "manifest.json").is_file():
            raise StoreError(f"{error}\nthen continue with: toa resume {run_dir}") from error
        raise
    print_report(report)
    raise typer.Exit(report.exit_code)


def _run_with_progress(
    settings: RunSettings,
    input_path: Path,
    run_dir: Path,
    prompt_field: str | None,
    limit: int | None,
    force: bool,
    rerun_changed: bool,
) -> RunReport:
    from toa.cli.progress import RichProgress
    from toa.engine.runner import run

    with RichProgress(console) as progress:
        return run_with_interrupt(
            lambda stop: run(
                settings,
                input_path=input_path,
                run_dir=run_dir,
                prompt_field=prompt_field,
                limit=limit,
                progress=progress,
                stop=stop,
                force=force,
                rerun_changed=rerun_changed,
            )
        )


def run_command(
    config: Annotated[Path, typer.Option("--config", "-c", help="The run's YAML configuration.")],
    input: Annotated[
        Path, typer.Option("--input", "-i", help="Prompts: .jsonl, .json, .csv or .parquet.")
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Run directory (created; resumed if it exists).")
    ],
    strategy: Annotated[
        str | None,
        typer.Option(help=f"Override the strategy: {', '.join(STRATEGY_NAMES)}."),
    ] = None,
    budget: Annotated[
        int | None, typer.Option(help="Override the generations per prompt.", min=1)
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first K good prompts.", min=1)] = None,
    prompt_field: Annotated[
        str | None,
        typer.Option(help="Field holding the prompt (default: instruction, then prompt)."),
    ] = None,
    cache: Annotated[
        Path | None,
        typer.Option(
            help="A generation cache file shared across runs: identical requests are not sent "
            "again (sets runner.cache)."
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Write the run into a non-empty directory that is not a run (refused otherwise).",
        ),
    ] = False,
    rerun_changed: Annotated[bool, _RERUN_CHANGED] = False,
    backend: Annotated[str | None, _BACKEND] = None,
    workers: Annotated[int | None, _WORKERS] = None,
    ray_address: Annotated[str | None, _RAY_ADDRESS] = None,
) -> None:
    """Run a strategy over every prompt; every call is stored as it completes.

    Exit code: 0 all good; 1 some rows were bad or some prompts failed; 2 a usage or
    configuration error; 130 interrupted (resume with `toa resume RUN_DIR`).
    """
    from toa.config import load_config, with_overrides

    try:
        settings = with_overrides(
            load_config(config), strategy=strategy, budget=budget, cache=_cache_path(cache),
            backend=backend, workers=workers, address=ray_address,
        )  # fmt: skip
        _execute(
            settings,
            input_path=input,
            run_dir=output,
            prompt_field=prompt_field,
            limit=limit,
            force=force,
            rerun_changed=rerun_changed,
        )
    except TOAError as error:
        fail(error)


def _cache_path(cache: Path | None) -> str | None:
    """An absolute path, so that `toa resume` from another directory finds the same file."""
    return str(cache.expanduser().resolve()) if cache is not None else None


def resume_command(
    run_dir: Annotated[Path, typer.Argument(help="A run directory made by `toa run`.")],
    limit: Annotated[int | None, typer.Option(help="Only the first K good prompts.", min=1)] = None,
    cache: Annotated[
        Path | None,
        typer.Option(help="Use this generation cache file (default: the run's own setting)."),
    ] = None,
    rerun_changed: Annotated[bool, _RERUN_CHANGED] = False,
    backend: Annotated[str | None, _BACKEND] = None,
    workers: Annotated[int | None, _WORKERS] = None,
    ray_address: Annotated[str | None, _RAY_ADDRESS] = None,
) -> None:
    """Continue a stopped run with its own configuration; never repeats a finished call.

    The backend (--backend, --workers, --ray-address) may differ from the first run's."""
    from toa.config import parse_config, with_overrides
    from toa.store.manifest import read_manifest

    try:
        manifest = read_manifest(run_dir)
        settings = with_overrides(
            parse_config(manifest["config"], source=str(run_dir / "manifest.json")),
            cache=_cache_path(cache), backend=backend, workers=workers, address=ray_address,
        )  # fmt: skip
        source = manifest.get("input", {})
        input_path = Path(source.get("path", ""))
        if not input_path.is_file():
            raise ConfigError(
                f"{run_dir}: the run's input {input_path} is gone; restore it, or continue with "
                f"`toa run -c CONFIG -i INPUT -o {run_dir}`"
            )
        _execute(
            settings,
            input_path=input_path,
            run_dir=run_dir,
            prompt_field=source.get("prompt_field"),
            limit=limit,
            rerun_changed=rerun_changed,
        )
    except TOAError as error:
        fail(error)


def status_command(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (may be running).")],
) -> None:
    """Prompts done / partial / failed, calls, tokens and rewards of a run (read-only)."""
    from toa.store.manifest import read_manifest
    from toa.store.run_store import RunStore

    try:
        manifest = read_manifest(run_dir)
        with RunStore.open_readonly(run_dir / "store.sqlite") as store:
            s = store.summary()
    except TOAError as error:
        fail(error)
    table = Table(title=f"{run_dir}", show_header=False)
    table.add_row("strategy", f"{manifest.get('strategy')} (budget {manifest.get('budget')})")
    if manifest.get("kind") == "serve":
        table.add_row("input", "requests served by `toa serve`")
    else:
        table.add_row("input", str(manifest.get("input", {}).get("path")))
    table.add_row("prompts", f"{s.prompts_done} done, {s.prompts_partial} partial, "
                             f"{s.prompts_failed} failed")  # fmt: skip
    table.add_row("calls", f"{s.calls_ok:,} ok, {s.calls_failed:,} failed")
    table.add_row("tokens", f"{s.prompt_tokens:,} prompt + {s.completion_tokens:,} completion")
    table.add_row("rewards", f"{s.rewards_ok:,} ok, {s.rewards_failed:,} failed")
    table.add_row("started", str(manifest.get("started")))
    console.print(table)


def priors_command(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (may be running).")],
    out: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Write the prior here (default: print it)."),
    ] = None,
) -> None:
    """What a run learned about its agents, as a priors.json for `strategy.prior`.

    Sums the evidence of the run's finished prompts (any strategy): per agent, how often its
    fresh answers set a new best and its refinements beat their parent, and by how much. Start
    another run from it with `strategy: {prior: {source: file, path: priors.json}}`.
    """
    import json

    from toa.engine.runner import learned_prior
    from toa.store.manifest import read_manifest
    from toa.store.run_store import RunStore

    try:
        manifest = read_manifest(run_dir)
        agents = tuple(a["name"] for a in manifest["config"]["agents"])
        with RunStore.open_readonly(run_dir / "store.sqlite") as store:
            prior = learned_prior(store, agents)
    except TOAError as error:
        fail(error)
    text = json.dumps(prior.to_dict(), indent=1) + "\n"
    if out is None:
        typer.echo(text, nl=False)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(TOAError(f"{out}: cannot write the prior ({exc.strerror})"))
    console.print(f"wrote {out}: evidence of {prior.prompts} finished prompts", highlight=False)
