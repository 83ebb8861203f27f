"""The `toa` command line. Thin: parse, build settings, call the library, set the exit code.

The `run`, `resume`, `status`, `export` and `fake-server` commands live here; `demo` and the
`models` group live in private modules and are registered on `app` below, in the same order.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.logging import RichHandler
from rich.table import Table

from toa import __version__
from toa._cli_common import _fail, _print_report, _run_with_interrupt, console
from toa._cli_demo import _print_demo as _print_demo
from toa._cli_demo import _run_demo as _run_demo
from toa._cli_demo import demo
from toa._cli_models import models_app
from toa._cli_models import models_down as models_down
from toa._cli_models import models_list as models_list
from toa._cli_models import models_requirements as models_requirements
from toa._cli_models import models_up as models_up
from toa.config import RunSettings, load_config, parse_config
from toa.errors import ConfigError, TOAError

app = typer.Typer(
    name="toa",
    help=(
        "Multi-agent sampling with Tree Search-based Orchestrated Agents (TOA): several language "
        "models collaborate on each prompt, steered by tree search and a reward model."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(
        level=level,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
        force=True,
    )


def _version(value: bool) -> None:
    if value:
        typer.echo(f"toa {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More logging: -v info, -vv debug.")
    ] = 0,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    _setup_logging(verbose)


def _execute(
    settings: RunSettings,
    *,
    input_path: Path,
    run_dir: Path,
    prompt_field: str | None,
    limit: int | None,
) -> None:
    from toa.engine.runner import run
    from toa.progress import RichProgress

    with RichProgress(console) as progress:
        report = _run_with_interrupt(
            lambda stop: run(
                settings,
                input_path=input_path,
                run_dir=run_dir,
                prompt_field=prompt_field,
                limit=limit,
                progress=progress,
                stop=stop,
            )
        )
    _print_report(report)
    raise typer.Exit(report.exit_code)


@app.command("run")
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
        typer.Option(help="Override the strategy: toa, random, prs, ensemble, seq-refine, moa."),
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
) -> None:
    """Run a strategy over every prompt; every call is stored as it completes.

    Exit code: 0 all good; 1 some rows were bad or some prompts failed; 2 a usage or
    configuration error; 130 interrupted (resume with `toa resume RUN_DIR`).
    """
    try:
        settings = load_config(config).with_overrides(
            strategy=strategy, budget=budget, cache=_cache_path(cache)
        )
        _execute(settings, input_path=input, run_dir=output, prompt_field=prompt_field, limit=limit)
    except TOAError as error:
        _fail(error)


def _cache_path(cache: Path | None) -> str | None:
    """An absolute path, so that `toa resume` from another directory finds the same file."""
    return str(cache.expanduser().resolve()) if cache is not None else None


@app.command("resume")
def resume_command(
    run_dir: Annotated[Path, typer.Argument(help="A run directory made by `toa run`.")],
    limit: Annotated[int | None, typer.Option(help="Only the first K good prompts.", min=1)] = None,
    cache: Annotated[
        Path | None,
        typer.Option(help="Use this generation cache file (default: the run's own setting)."),
    ] = None,
) -> None:
    """Continue a stopped run with its own configuration; never repeats a finished call."""
    from toa.engine.manifest import read_manifest

    try:
        manifest = read_manifest(run_dir)
        settings = parse_config(
            manifest["config"], source=str(run_dir / "manifest.json")
        ).with_overrides(cache=_cache_path(cache))
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
        )
    except TOAError as error:
        _fail(error)


@app.command("status")
def status_command(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (may be running).")],
) -> None:
    """Prompts done / partial / failed, calls, tokens and rewards of a run (read-only)."""
    from toa.engine.manifest import read_manifest
    from toa.engine.store import RunStore

    try:
        manifest = read_manifest(run_dir)
        with RunStore.open_readonly(run_dir / "store.sqlite") as store:
            s = store.summary()
    except TOAError as error:
        _fail(error)
    table = Table(title=f"{run_dir}", show_header=False)
    table.add_row("strategy", f"{manifest.get('strategy')} (budget {manifest.get('budget')})")
    table.add_row("input", str(manifest.get("input", {}).get("path")))
    table.add_row("prompts", f"{s.prompts_done} done, {s.prompts_partial} partial, "
                             f"{s.prompts_failed} failed")  # fmt: skip
    table.add_row("calls", f"{s.calls_ok:,} ok, {s.calls_failed:,} failed")
    table.add_row("tokens", f"{s.prompt_tokens:,} prompt + {s.completion_tokens:,} completion")
    table.add_row("rewards", f"{s.rewards_ok:,} ok, {s.rewards_failed:,} failed")
    table.add_row("started", str(manifest.get("started")))
    console.print(table)


@app.command("priors")
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

    from toa.engine.manifest import read_manifest
    from toa.engine.runner import learned_prior
    from toa.engine.store import RunStore

    try:
        manifest = read_manifest(run_dir)
        agents = tuple(a["name"] for a in manifest["config"]["agents"])
        with RunStore.open_readonly(run_dir / "store.sqlite") as store:
            prior = learned_prior(store, agents)
    except TOAError as error:
        _fail(error)
    text = json.dumps(prior.to_dict(), indent=1) + "\n"
    if out is None:
        typer.echo(text, nl=False)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        _fail(TOAError(f"{out}: cannot write the prior ({exc.strerror})"))
    console.print(f"wrote {out}: evidence of {prior.prompts} finished prompts", highlight=False)


@app.command("export")
def export_command(
    run_dir: Annotated[
        Path, typer.Argument(help="A run directory (finished, still running or interrupted).")
    ],
    format: Annotated[str, typer.Option("--format", "-f", help="sft or dpo.")],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="A .jsonl or .parquet file, or a directory."),
    ],
    layout: Annotated[
        str, typer.Option(help="SFT rows: messages, or prompt-completion (two message lists).")
    ] = "messages",
    system_prompt: Annotated[
        str | None, typer.Option(help="A system message put first when a prompt has none.")
    ] = None,
    min_reward: Annotated[
        float | None, typer.Option(help="Leave out prompts whose best raw reward is below this.")
    ] = None,
    rejected: Annotated[
        str | None, typer.Option(help="DPO: the rejected response: lowest (default) or rank.")
    ] = None,
    rejected_rank: Annotated[
        int | None,
        typer.Option(help="DPO: reject the K-th ranked response (the paper: 30 of 160).", min=2),
    ] = None,
    if_short: Annotated[
        str, typer.Option(help="DPO, fewer responses than K: lowest (pair it) or skip.")
    ] = "lowest",
    min_margin: Annotated[
        float, typer.Option(help="DPO: the reward gap a pair must exceed (0: no ties).", min=0.0)
    ] = 0.0,
    pairs_per_prompt: Annotated[
        int, typer.Option(help="DPO: pairs per prompt at most, each with the best.", min=1)
    ] = 1,
    different_agents: Annotated[
        bool, typer.Option(help="DPO: the rejected response must come from another agent.")
    ] = False,
    max_length_ratio: Annotated[
        float | None,
        typer.Option(help="DPO: drop pairs whose chosen/rejected length ratio is above this."),
    ] = None,
    dedupe: Annotated[
        str, typer.Option(help="DPO duplicates: near (normalised text), exact or none.")
    ] = "near",
    card: Annotated[
        bool | None,
        typer.Option("--card/--no-card", help="Write a dataset card (default: directories)."),
    ] = None,
) -> None:
    """Export finished prompts as SFT rows or DPO pairs in TRL's conversational form.

    Works on a run that is still going or was interrupted: only finished prompts are exported,
    and the report says how many were left out and why. Exit code: 0 rows written; 1 no row
    (nothing finished yet, or everything filtered out); 2 a usage, option or path error.
    """
    # `datasets` reads these at import; the export only writes locally and never needs the Hub.
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from toa.export import export_run, make_options

    try:
        checked, options = make_options(
            format,
            layout=layout,
            system_prompt=system_prompt,
            min_reward=min_reward,
            rejected=rejected,
            rejected_rank=rejected_rank,
            if_short=if_short,
            min_margin=min_margin,
            pairs_per_prompt=pairs_per_prompt,
            different_agents=different_agents,
            max_length_ratio=max_length_ratio,
            dedupe=dedupe,
        )
        report = export_run(run_dir, format=checked, out=output, options=options, card=card)
    except TOAError as error:
        _fail(error)
    for line in report.lines():
        console.print(line, highlight=False, markup=False)
    if report.rows == 0:
        console.print("[yellow]no row was exported[/]: see the reasons above")
        raise typer.Exit(1)


@app.command("fake-server")
def fake_server(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0 picks a free one).")] = 8000,
    host: Annotated[str, typer.Option(help="Interface to bind (loopback unless told).")] = (
        "127.0.0.1"
    ),
    latency_ms: Annotated[
        float, typer.Option(help="Fixed latency added to every generation, in ms.")
    ] = 0.0,
    agents: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated agent (model) names; defaults to the world's agent_a,b,c. "
            "Unknown names take the world's profiles in order."
        ),
    ] = None,
    judges: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated names of judge agents (for the `judge` reward): they answer "
            "Yes/No with log-probabilities P(Yes) = hidden quality, or 'Score: N' when asked for "
            "a 1-10 score."
        ),
    ] = None,
    world: Annotated[
        str, typer.Option(help="Simulated world: helps | hurts | dominant | specialists.")
    ] = "helps",
    fail_rate: Annotated[
        float, typer.Option(help="Fraction of generation requests answered with HTTP 500.")
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of the world's noise and of the faults.")] = 0,
    port_file: Annotated[
        Path | None, typer.Option(help="Write the bound port here once listening.")
    ] = None,
) -> None:
    """Run an OpenAI-compatible test server with a simulated world of agents.

    Every response carries its hidden quality, which the `simulated` reward reads back; GET /stats
    counts requests by agent and kind (fresh, refine, aggregate). See `toa.testing.server`.
    """
    from toa.testing.server import serve

    agent_names = [a.strip() for a in agents.split(",") if a.strip()] if agents else None
    judge_names = [a.strip() for a in judges.split(",") if a.strip()] if judges else None
    console.print(f"[bold]toa fake-server[/]: world {world!r}, seed {seed}; Ctrl-C stops it")
    serve(
        host=host,
        port=port,
        world_name=world,
        agents=agent_names,
        judges=judge_names,
        latency_ms=latency_ms,
        fail_rate=fail_rate,
        seed=seed,
        port_file=port_file,
    )


app.command()(demo)
app.add_typer(models_app, name="models")


def main() -> None:
    """Console-script entry point."""
    app()
