"""Known-good marks: the last one still on the deployed branch, never one a reset removed."""

from app.checkpoints import store
from app.targets.git import GitRepo
from tests.support.targets import git, make_code_target


def test_last_known_good_skips_a_commit_the_branch_no_longer_has(app, tmp_path):
    target = make_code_target(tmp_path)
    repo = GitRepo(target.repo, "main")
    older, newest = target.commits[1], target.commits[3]
    with app.app_context():
        store.mark_known_good("staging", older, None)
        store.mark_known_good("staging", newest, None)
        assert store.last_known_good("staging", repo.contains).commit == newest
        git(target.repo, "reset", "-q", "--hard", target.commits[2])  # newest now lives only in a tag, if anywhere
        assert store.last_known_good("staging", repo.contains).commit == older


def test_verifying_a_commit_again_makes_it_the_newest_mark(app, tmp_path):
    target = make_code_target(tmp_path)
    repo = GitRepo(target.repo, "main")
    first, second = target.commits[1], target.commits[2]
    with app.app_context():
        store.mark_known_good("staging", first, None)
        store.mark_known_good("staging", second, None)
        store.mark_known_good("staging", first, None)
        assert store.last_known_good("staging", repo.contains).commit == first
        assert store.last_known_good("other", repo.contains) is None
