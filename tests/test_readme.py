"""The README quotes results only from files `tssm publish` committed under docs/results/, and
every number it quotes there is in the file it cites; its links stay inside the repository."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def _section(title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, flags=re.S | re.M)
    assert m, f"README has no section '## {title}'"
    return m.group(1)


def test_every_number_of_the_results_section_is_in_a_published_file_it_cites():
    results = _section("Results")
    cited = sorted(set(re.findall(r"\((docs/results/[^)\s]+\.md)\)", results)))
    assert cited, "the Results section cites no published summary"
    published = ""
    for rel in cited:
        path = REPO / rel
        assert path.is_file(), f"README cites {rel}, which is not committed (tssm publish results/<name>)"
        assert (path.parent / "MANIFEST.json").is_file(), f"{rel} was not written by tssm publish"
        published += path.read_text()
    # accuracies and differences as the summaries print them: 0.971, +1.23, -0.28 ...
    numbers = re.findall(r"(?<![\w.])[+-]?\d+\.\d{2,3}(?![\d])", results)
    assert numbers, "the Results section quotes no number"
    missing = [n for n in numbers if n not in published]
    assert not missing, f"README quotes {missing}, found in none of {cited}"


def test_images_and_links_of_the_readme_exist_in_the_repository():
    for target in re.findall(r"\]\(([^)#\s]+)", README):
        if target.startswith(("http://", "https://")):
            continue
        assert not target.startswith(".."), f"README links outside the repository: {target}"
        assert (REPO / target).exists(), f"README links {target}, which is not in the repository"


def test_readme_is_about_two_screens():
    assert len(README.splitlines()) <= 200
