"""Benchmark reports: the results as JSON, a Markdown summary with goal rows, PNG plots."""
import json
import os.path as osp
import statistics
from typing import Any, Dict, List, Mapping, Optional

from .memory import MIB


def _num(value: Optional[float], fmt: str = '.2f') -> str:
    return '-' if value is None else format(value, fmt)


def _summary(node: Optional[Mapping[str, Any]]) -> str:
    if not node:
        return '-'
    return f'{node["median"]:.2f} ({node["low"]:.2f}-{node["high"]:.2f})'


def _stat(run: Mapping[str, Any], which: str, key: str, fmt: str) -> str:
    stats = run.get(which)
    return '-' if not stats else format(stats[key], fmt)


def _vjps(run: Mapping[str, Any]) -> str:
    """Backward VJPs per step: total (linear solve + fallback)."""
    stats = run.get('backward')
    if not stats:
        return '-'
    total = stats.get('vjps', stats['nfe'])
    return f'{total:.1f} ({stats["nfe"]:.1f} + {total - stats["nfe"]:.1f})'


def goals_table(goals: List[Mapping[str, Any]]) -> List[str]:
    """Markdown rows: goal, measured (median and spread over rounds), target, met."""
    lines = ['| goal | measured (spread over rounds) | target | met |', '|---|---|---|---|']
    for g in goals:
        value = _num(g['value'], '.3f')
        if g.get('spread'):
            value += f' ({g["spread"]})'
        met = {True: 'met', False: '**not met**', None: 'not measured'}[g['met']]
        lines.append(f'| {g["name"]} | {value} | {g["op"]} {g["threshold"]:.3g} | {met} |')
    return lines


def steps_table(runs: Mapping[str, Mapping[str, Any]]) -> List[str]:
    """Markdown rows of a step-time group: per model its memory, time and solver work."""
    lines = [
        '| model | params | peak MiB | step s (median; rounds) | fwd f-evals | fwd rel. res. '
        '| bwd VJPs (solve + fallback) | bwd rel. res. |', '|---|---|---|---|---|---|---|---|'
    ]
    for key, run in runs.items():
        if 'error' in run:
            lines.append(f'| {key} | failed: {run["error"]} |||||||')
            continue
        rounds = ', '.join(f'{t:.2f}' for t in run.get('step_times_s', []))
        lines.append(
            f'| {key} | {run["params"] / 1e6:.2f}M | {run["train_peak_bytes"] / MIB:.0f} '
            f'| {_num(run.get("step_time_s"))} ({rounds}) | {_stat(run, "forward", "nfe", ".1f")} '
            f'| {_stat(run, "forward", "rel_res", ".3g")} | {_vjps(run)} '
            f'| {_stat(run, "backward", "rel_res", ".3g")} |')
    return lines


def memory_table(memory: Mapping[str, Mapping[str, Any]]) -> List[str]:
    """Markdown rows: peak memory and step time against f-evaluations."""
    budgets = sorted({int(k.split('-')[1]) for k in memory})
    lines = ['| f-evals | implicit MiB | unrolled MiB | implicit / unrolled | implicit step s '
             '| unrolled step s | implicit fwd rel. res. |', '|---|---|---|---|---|---|---|']
    for n in budgets:
        imp, unr = memory.get(f'implicit-{n}', {}), memory.get(f'unrolled-{n}', {})
        mem = [r.get('train_peak_bytes') for r in (imp, unr)]
        ratio = mem[0] / mem[1] if None not in mem else None
        lines.append(f'| {n} | {_num(mem[0] and mem[0] / MIB, ".0f")} '
                     f'| {_num(mem[1] and mem[1] / MIB, ".0f")} | {_num(ratio, ".3f")} '
                     f'| {_num(imp.get("step_time_s"))} | {_num(unr.get("step_time_s"))} '
                     f'| {_stat(imp, "forward", "rel_res", ".3g")} |')
    return lines


def solver_table(race: Mapping[str, Any]) -> List[str]:
    """Markdown rows of a solver race."""
    lines = ['| solver | f-evals | final mean rel. res. | wall s | in f s | outside f s '
             '| outside f / wall |', '|---|---|---|---|---|---|---|']
    for name, entry in race.items():
        if '/overhead_' in name:
            continue
        lines.append(
            f'| {name} | {entry["nfe"]} | {entry["curve"][-1]:.3g} '
            f'| {statistics.median(entry["wall_s"]):.3f} '
            f'| {statistics.median(entry["in_f_s"]):.3f} '
            f'| {statistics.median(entry["overhead_s"]):.3f} '
            f'| {entry["overhead_fraction"]:.3f} |')
    for kind in ('broyden', 'anderson'):
        if f'{kind}/overhead_ours_over_torchdeq' in race:
            lines.append(f'\n{kind}: time outside f, ours / TorchDEQ per round: '
                         f'{_summary(race[f"{kind}/overhead_ours_over_torchdeq"])}')
    return lines


def f_table(f_result: Mapping[str, Any]) -> List[str]:
    """Markdown rows of the f variants and the convolution throughput."""
    lines = ['| evaluation | variant | median s | eager / variant (spread) | compile s |',
             '|---|---|---|---|---|']
    for kind, by_variant in f_result['variants'].items():
        for key, times in by_variant.items():
            if not key.endswith('_s') or key == 'compile_s':
                continue
            name = key[:-2]
            compile_s = by_variant.get('compile_s') if name == 'compiled' else None
            lines.append(f'| {kind} | {name} | {statistics.median(times):.4f} '
                         f'| {_summary(by_variant.get(f"{name}/eager_over_variant"))} '
                         f'| {_num(compile_s, ".1f")} |')
    conv = f_result['conv']
    lines += ['', f'Convolutions of f: {conv["f_gflops_per_s"]:.1f} GFLOP/s; a large plain 3x3 '
              f'convolution: {conv["reference_gflops_per_s"]:.1f} GFLOP/s; ratio '
              f'{conv["f_over_reference"]:.2f} (torch profiler, 2 FLOPs per multiply-add).']
    return lines


def markdown(results: Mapping[str, Any]) -> str:
    """The report as Markdown."""
    m, s = results['machine'], results['settings']
    h, w = s['size']
    lines = [
        '# MDEQ benchmark', '',
        f'{m["cpu"]}, {m["cpu_count"]} cores; torch {m["torch"]}. {results["date"]}, '
        f'{results["wall_time_s"]:.0f} s. Command: `{results["command"]}`', '',
        f'Input {h}x{w}, batch {s["batch"]}, generated street scenes with their label maps. '
        f'MDEQ at two states: `init` (random weights) and `trained` ({results["trained"]}). '
        'Every model runs in its own fresh process; the models compared are stepped in '
        'interleaved rounds (A B A B ...), and ratios are medians of per-round ratios with '
        'their spread (min-max). Absolute times depend on the machine load; the ratios are '
        'what the goals use. Peak memory: live tensor bytes of the first training step '
        '(parameters, buffers and inputs included), thread-independent.', '',
        '## Goals (trained state)', '', *goals_table(results['goals']), '',
    ]
    for threads, runs in results['steps'].items():
        lines += [f'## Training step, {threads} thread(s)', '',
                  'Budgets of the config (forward/backward Broyden, tol 1e-3); solver figures '
                  'are means over the timed steps.', '', *steps_table(runs), '']
        for name, summary in results['step_ratios'][threads].items():
            lines.append(f'- {name.replace("_", " ")}: {_summary(summary)}')
        lines.append('')
    for threads, starts in results.get('starts', {}).items():
        lines += [f'## Evaluation forward from the learned start, {threads} thread(s)', '',
                  'Trained state with its learned initializer (trained here from it); cold: the '
                  'same model solving from zeros. Solves stop at the config\'s tolerance; times '
                  f'are medians of {s["rounds"]} interleaved rounds in one process.', '',
                  '| start | forward s (median) | solver steps | f-evals (batched) | rel. res. |',
                  '|---|---|---|---|---|']
        for start in ('cold', 'learned'):
            r = starts[start]
            lines.append(f'| {start} | {r["time_s"]:.3f} | {r["steps"]:.1f} | {r["nfe"]:.0f} | '
                         f'{r["rel_res"]:.2e} |')
        lines += ['', f'- learned over cold: {_summary(starts["learned_over_cold"])}', '']
    lines += ['## Peak memory against f-evaluations (trained state)', '',
              f'Fixed budgets (tol 0), {s["threads"][0]} thread(s), one timed step.', '',
              *memory_table(results['memory']), '', '![memory](memory_vs_f_evals.png)', '']
    for threads, race in results.get('solvers', {}).items():
        lines += [f'## Forward solvers on the trained MDEQ f, {threads} thread(s)', '',
                  f'{s["solver_steps"]} steps each (tol 0), same f and z0 (zeros), eval mode; '
                  f'wall times are medians of {s["solver_rounds"]} interleaved rounds.', '',
                  *solver_table(race), '']
    if results.get('solvers'):
        lines += ['![solvers](solver_curves.png)', '']
    for threads, f_result in results.get('f', {}).items():
        lines += [f'## f itself (trained state), {threads} thread(s)', '',
                  'At the equilibrium; `forward`: no-grad evaluation (a forward solver step), '
                  '`forward_vjp`: evaluation with one vector-Jacobian product (a backward '
                  f'solver step); {s["f_rounds"]} interleaved rounds.', '', *f_table(f_result),
                  '']
    return '\n'.join(lines)


def new_figure(ncols: int = 1, figsize: tuple = (6, 4)):
    """A matplotlib figure and its axes on the file-only Agg backend (no display needed)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt.subplots(1, ncols, figsize=figsize)


def save_figure(fig, path: str, title: Optional[str] = None, dpi: int = 120) -> None:
    """Title (if any), tight layout, write ``path`` and release the figure."""
    import matplotlib.pyplot as plt
    if title is not None:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def plot_memory(path: str, memory: Mapping[str, Mapping[str, Any]], title: str) -> None:
    """Peak memory of the implicit and unrolled runs against f-evaluations."""
    fig, ax = new_figure()
    for kind in ('implicit', 'unrolled'):
        points = sorted((int(k.split('-')[1]), r['train_peak_bytes'] / MIB)
                        for k, r in memory.items() if k.startswith(kind) and 'error' not in r)
        if points:
            ax.plot(*zip(*points), 'o-', label=kind)
    ax.set_xlabel('f-evaluations (forward = backward budget, or unrolled layers)')
    ax.set_ylabel('training peak memory (MiB)')
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)


def plot_solvers(path: str, races: Mapping[str, Mapping[str, Any]]) -> None:
    """Best relative residual against f-evaluations for each solver (first thread count)."""
    race = next(iter(races.values()))
    fig, ax = new_figure()
    for name, entry in race.items():
        if '/overhead_' not in name:
            curve = entry['curve']
            ax.semilogy(range(1, len(curve) + 1), curve,
                        '-' if name.startswith('ours') else '--', label=name)
    ax.set_xlabel('f-evaluations')
    ax.set_ylabel('best relative residual (batch mean)')
    ax.set_title('forward solve on the trained MDEQ f')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def plot_residual_curves(path: str, forward: Mapping[str, Mapping[str, list]],
                         backward: tuple, title: str) -> None:
    """Forward residual curves per solver and the implicit backward's (mean over images as a
    line, min to max as a band)."""
    import numpy as np
    fig, axes = new_figure(2, (12, 4))
    series = [(axes[0], name, c) for name, c in forward.items()]
    series.append((axes[1], f'implicit backward ({backward[0]})', backward[1]))
    for i, (ax, name, curve) in enumerate(series):
        rel = np.asarray(curve['rel'])
        steps = np.arange(1, rel.shape[0] + 1)
        ax.semilogy(steps, rel.mean(axis=1), color=f'C{i}', label=name)
        if rel.shape[1] > 1:
            ax.fill_between(steps, rel.min(axis=1), rel.max(axis=1), color=f'C{i}', alpha=0.2)
    for ax, what in zip(axes, ('forward', 'backward')):
        ax.set_xlabel('solver step (f-evaluations)')
        ax.set_ylabel('relative residual ||f(z)-z|| / ||f(z)||')
        ax.set_title(f'{what} solve')
        ax.axhline(0.05, color='gray', ls=':', label='0.05 (rule of thumb)')
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(fig, path, title)


def plot_anytime(path: str,
                 rows: List[Mapping[str, Any]],
                 title: str,
                 cold_rows: Optional[List[Mapping[str, Any]]] = None) -> None:
    """The test metric and the mean final residual against the evaluation budget; with
    ``cold_rows``, ``rows`` are the learned start's and both are drawn."""
    fig, ax = new_figure()
    twin = ax.twinx()
    curves = [('learned start', rows, '-'), ('cold start', cold_rows, ':')] if cold_rows else [
        (None, rows, '-')]
    for label, curve, style in curves:
        budgets = [r['budget'] for r in curve]
        ax.plot(budgets, [r['value'] for r in curve], 'o' + style, color='C0', label=label)
        twin.plot(budgets, [r['mean_rel_res'] for r in curve], 's' + style, color='C1')
    ax.set_xlabel('evaluation budget (forward solver steps)')
    ax.set_ylabel(rows[0]['metric'], color='C0')
    ax.grid(alpha=0.3)
    twin.set_ylabel('mean final relative residual', color='C1')
    twin.set_yscale('log')
    if cold_rows:
        ax.legend(loc='center right')
    ax.set_title(title)
    save_figure(fig, path)


def write_report(results: Dict[str, Any], out_dir: str) -> None:
    """Write ``results.json``, ``results.md`` and the PNG plots into ``out_dir``."""
    with open(osp.join(out_dir, 'results.json'), 'w', encoding='utf-8') as f:
        json.dump(results, f, indent=1, default=str)
    with open(osp.join(out_dir, 'results.md'), 'w', encoding='utf-8') as f:
        f.write(markdown(results))
    s = results['settings']
    plot_memory(osp.join(out_dir, 'memory_vs_f_evals.png'), results['memory'],
                f'MDEQ, trained state, {s["size"][0]}x{s["size"][1]}, batch {s["batch"]}')
    if results.get('solvers'):
        plot_solvers(osp.join(out_dir, 'solver_curves.png'), results['solvers'])
