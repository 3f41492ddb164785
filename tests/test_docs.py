"""The documentation: every relative link of README.md and docs/ resolves (file and anchor), every
repository path it names exists, the README stays a short entry page, and the model zoo page is
the one the metafiles give.

A path is "named" when a code span or a fenced code block holds a word that starts with one of
``PATH_PREFIXES``; paths of other packages are written with their scope (``mmseg::...``) or do
not start with those folders, and words with a placeholder (``CONFIG``, ``...``, ``<name>``)
are not paths. Brace lists (``fcn_hr{18s,18,48}``) and glob patterns must each match a file.
"""
import glob
import importlib.util
import re
from pathlib import Path
from typing import Dict, Iterator, List, Set

import pytest

REPO = Path(__file__).resolve().parent.parent
PATH_PREFIXES = ('configs/', 'tools/', 'mdeq_mm/', 'tests/', 'docs/')
README_MAX_LINES = 250
FENCE = re.compile(r'^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$', re.M | re.S)
INLINE_CODE = re.compile(r'(`+)(.+?)\1', re.S)
LINK = re.compile(r'!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')
REFERENCE = re.compile(r'^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)', re.M)
HEADING = re.compile(r'^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$', re.M)
HTML_ANCHOR = re.compile(r'<a\s+(?:name|id)="([^"]+)"')
SCHEME = re.compile(r'^[a-zA-Z][a-zA-Z0-9+.-]*:')
# '...', '<name>', '$VAR', or an upper-case word as a whole part of the path (CONFIG, NAME.py;
# not README.md)
PLACEHOLDER = re.compile(r'\.\.\.|[<>$]|(^|/)[A-Z][A-Z0-9_]*[A-Z0-9](/|$|\.(?!md$))')
WORD_EDGES = '\'"`()[],;:.!?\\'


def doc_files(root: Path) -> List[Path]:
    """README.md and every markdown page under docs/."""
    return [root / 'README.md', *sorted((root / 'docs').rglob('*.md'))]


def without_code(text: str) -> str:
    """The text with fenced blocks and code spans removed (links inside them are not links)."""
    return INLINE_CODE.sub('', FENCE.sub('', text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation removed, spaces to
    hyphens."""
    text = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', heading)
    text = re.sub(r'[^\w\- ]', '', text.lower())
    return text.replace(' ', '-')


def anchors(text: str) -> Set[str]:
    """Every anchor a page defines: its headings' slugs (repeats get -1, -2, ...) and HTML ones."""
    found: Set[str] = set(HTML_ANCHOR.findall(text))
    seen: Dict[str, int] = {}
    for heading in HEADING.findall(FENCE.sub('', text)):
        base = slug(heading)
        found.add(base if base not in seen else f'{base}-{seen[base]}')
        seen[base] = seen.get(base, 0) + 1
    return found


def link_problems(page: Path, root: Path) -> Iterator[str]:
    """A line for each relative link of ``page`` whose file or anchor does not exist."""
    text = page.read_text(encoding='utf-8')
    prose = without_code(text)
    for target in LINK.findall(prose) + REFERENCE.findall(prose):
        if SCHEME.match(target):
            continue
        path, _, anchor = target.partition('#')
        resolved = (page.parent / path).resolve() if path else page
        where = f'{page.relative_to(root)}: link {target!r}'
        if root.resolve() not in (resolved, *resolved.parents):
            yield f'{where} leaves the repository'
        elif not resolved.exists():
            yield f'{where}: {path} does not exist'
        elif anchor and resolved.suffix == '.md' and \
                anchor not in anchors(resolved.read_text(encoding='utf-8')):
            yield f'{where}: no heading gives #{anchor}'


def code_words(text: str) -> Iterator[str]:
    """The words of every code span and fenced code block, edges stripped of punctuation."""
    blocks = [match.group(0) for match in FENCE.finditer(text)]
    spans = [m.group(2) for m in INLINE_CODE.finditer(FENCE.sub('', text))]
    for chunk in [*blocks, *spans]:
        for word in chunk.split():
            yield word.strip(WORD_EDGES)


def expand_braces(pattern: str) -> List[str]:
    """``a{b,c}d`` -> ``['abd', 'acd']``, nested left to right."""
    match = re.search(r'\{([^{}]*)\}', pattern)
    if not match:
        return [pattern]
    head, tail = pattern[:match.start()], pattern[match.end():]
    return [out for part in match.group(1).split(',') for out in expand_braces(head + part + tail)]


def path_problems(page: Path, root: Path) -> Iterator[str]:
    """A line for each repository path named in ``page``'s code that does not exist."""
    for word in code_words(page.read_text(encoding='utf-8')):
        if not word.startswith(PATH_PREFIXES) or PLACEHOLDER.search(word):
            continue
        for path in expand_braces(word):
            if any(char in path for char in '*?['):
                exists = bool(glob.glob(str(root / path)))
            else:
                exists = (root / path).exists()
            if not exists:
                yield f'{page.relative_to(root)}: {path} does not exist'


def test_every_relative_link_resolves_to_a_file_and_heading():
    problems = [line for page in doc_files(REPO) for line in link_problems(page, REPO)]
    assert problems == []


def test_every_repository_path_named_in_the_docs_exists():
    problems = [line for page in doc_files(REPO) for line in path_problems(page, REPO)]
    assert problems == []


def test_broken_links_anchors_and_paths_are_reported(tmp_path):
    (tmp_path / 'docs').mkdir()
    (tmp_path / 'tools').mkdir()
    (tmp_path / 'tools' / 'train.py').write_text('')
    (tmp_path / 'docs' / 'page.md').write_text('# A page\n\n## Known limits\n')
    (tmp_path / 'README.md').write_text(
        '# Title\n\n'
        '[ok](docs/page.md#known-limits) [ok](#title) [ok](https://x.org/a#b)\n'
        '[missing file](docs/nothing.md) [missing anchor](docs/page.md#limits)\n'
        '[outside](../elsewhere.md) `[in code](docs/nothing.md)`\n\n'
        'Run `tools/train.py`, `tools/train.py CONFIG`, `tools/{train,test}.py`, `tools/t*.py`,\n'
        '`tools/CONFIG.py`, `mmseg::tools/x.py`, `work_dirs/x.pth` and `tools/gone.py`.\n\n'
        '```shell\npython tools/missing.py --out docs/images/x.png\n```\n')
    links = list(link_problems(tmp_path / 'README.md', tmp_path))
    paths = list(path_problems(tmp_path / 'README.md', tmp_path))
    assert len(links) == 3
    assert any('docs/nothing.md does not exist' in line for line in links)
    assert any('no heading gives #limits' in line for line in links)
    assert any('leaves the repository' in line for line in links)
    assert sorted(line.split(': ')[1] for line in paths) == [
        'docs/images/x.png does not exist', 'tools/gone.py does not exist',
        'tools/missing.py does not exist', 'tools/test.py does not exist']


def test_heading_anchors_follow_github():
    page = '# Results on a 2-core x86-64 CPU (AMD EPYC), `shared`\n## Notes\n## Notes\n'
    assert anchors(page) == {'results-on-a-2-core-x86-64-cpu-amd-epyc-shared', 'notes', 'notes-1'}


def test_readme_stays_a_short_entry_page():
    lines = (REPO / 'README.md').read_text(encoding='utf-8').count('\n')
    assert lines <= README_MAX_LINES, f'README.md has {lines} lines; move details into docs/'


@pytest.fixture(scope='module')
def model_zoo_tool():
    spec = importlib.util.spec_from_file_location('gen_model_zoo',
                                                  REPO / 'tools' / 'misc' / 'gen_model_zoo.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_model_zoo_page_is_generated_from_the_current_metafiles(model_zoo_tool):
    page = (REPO / 'docs' / 'model_zoo.md').read_text(encoding='utf-8')
    assert page == model_zoo_tool.render(str(REPO)), \
        'docs/model_zoo.md is out of date: run python tools/misc/gen_model_zoo.py'


def test_model_zoo_check_fails_on_a_stale_page(model_zoo_tool, tmp_path, capsys):
    stale = tmp_path / 'model_zoo.md'
    stale.write_text(model_zoo_tool.render(str(REPO)).replace('8.97M', '9.00M'))
    assert model_zoo_tool.main(['--check', '--out', str(stale)]) == 1
    assert 'out of date' in capsys.readouterr().err


def test_model_zoo_rows_show_results_flops_and_published_figures(model_zoo_tool, tmp_path):
    folder = tmp_path / 'configs' / 'stock'
    folder.mkdir(parents=True)
    (folder / 'metafile.yaml').write_text(
        'Models:\n'
        '- Name: fcn_mdeq-small_stock\n'
        '  Config: configs/stock/fcn_mdeq-small_stock.py\n'
        '  Metadata: {Training Data: Cityscapes, Parameters: 8967987, FLOPs: 25000000000,\n'
        '             Paper Result: 75.1 mIoU | paper}\n'
        '  Results:\n'
        '  - {Task: Semantic Segmentation, Dataset: one frame, Metrics: {mIoU: 50.2}}\n')
    page = model_zoo_tool.render(str(tmp_path))
    assert '## stock' in page
    assert '| config | training data | batch | params | FLOPs | measured | published |' in page
    assert ('| [fcn_mdeq-small_stock](../configs/stock/fcn_mdeq-small_stock.py) | Cityscapes | - '
            '| 8.97M | 25.0G | mIoU 50.2 on one frame | 75.1 mIoU \\| paper |') in page
