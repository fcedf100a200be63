"""The git adapter's record of what the release commands wrote, against real repositories."""

from __future__ import annotations

import pytest

from app.targets.git import GitError, GitRepo
from tests.support.sinks import Lines
from tests.targets.test_git import commit, git, status


@pytest.fixture
def work(tmp_path):
    repo = tmp_path / "app"
    repo.mkdir()
    git(repo, "init", "--quiet", "-b", "main")
    commit(repo, "one", f="a\n", g="g\n", h="h\n")
    return repo


def test_the_record_lives_in_the_git_directory_and_is_read_by_a_new_adapter(work):
    (work / "f").write_text("built\n")
    (work / "h").unlink()  # a release may delete a tracked file too
    (work / "untracked").write_text("not recorded\n")
    assert GitRepo(work, "main").record_release_writes() == ["f", "h"]
    assert (work / ".git" / "rewind-release-writes.json").is_file()
    # The record is no file of the working tree:
    assert [line.split() for line in status(work).splitlines()] == [["M", "f"], ["D", "h"], ["??", "untracked"]]
    fresh = GitRepo(work, "main")
    assert fresh.release_writes() == {"f": git(work, "hash-object", "f"), "h": ""}
    dirty = fresh.dirty()
    assert (dirty.own, dirty.foreign) == (["f", "h"], [])
    assert fresh.checkout_drift() is None


def test_files_a_person_changed_before_the_release_are_never_recorded(work):
    (work / "g").write_text("hot-fix\n")
    repo = GitRepo(work, "main")
    before = repo.dirty()
    (work / "f").write_text("built\n")
    assert repo.record_release_writes(not_ours=before.foreign) == ["f"]
    dirty = repo.dirty()
    assert (dirty.own, dirty.foreign) == (["f"], ["g"])
    assert "uncommitted changes to g (accepted as the release commands' own" in repo.checkout_drift()


def test_a_recorded_file_changed_again_is_a_persons_and_refused(work):
    (work / "f").write_text("built\n")
    repo = GitRepo(work, "main")
    repo.record_release_writes()
    (work / "f").write_text("built\nand edited by hand\n")
    assert repo.dirty().foreign == ["f"]
    with pytest.raises(GitError, match="uncommitted changes to f — commit or discard"):
        repo.reset_hard("HEAD", sink=Lines())
    assert (work / "f").read_text() == "built\nand edited by hand\n"


def test_an_unreadable_record_accepts_nothing(work):
    (work / "f").write_text("built\n")
    (work / ".git" / "rewind-release-writes.json").write_text("{not json")
    repo = GitRepo(work, "main")
    assert repo.release_writes() == {} and repo.dirty().foreign == ["f"]
    with pytest.raises(GitError, match="uncommitted changes to f"):
        repo.revert([git(work, "rev-parse", "HEAD")])
    assert (work / "f").read_text() == "built\n"


def test_a_change_puts_the_releases_own_files_back_and_says_so(work):
    sha = commit(work, "two", g="g2\n")
    (work / "f").write_text("built\n")
    repo = GitRepo(work, "main")
    repo.record_release_writes()
    sink = Lines()
    repo.revert([sha], sink=sink)
    assert status(work) == "" and (work / "f").read_text() == "a\n" and (work / "g").read_text() == "g\n"
    assert any("putting back what the release commands wrote, before the revert" in text for _, text in sink)


def test_a_failed_change_writes_back_in_place_of_a_symlink_never_through_it_and_keeps_a_files_mode(work, tmp_path):
    outside = tmp_path / "shared-config.ini"
    outside.write_text("the server's own config\n")
    (work / "config.ini").symlink_to(outside)
    (work / "run.sh").write_text("#!/bin/sh\necho old\n")
    (work / "run.sh").chmod(0o755)
    git(work, "add", "config.ini", "run.sh")
    two = commit(work, "two", g="g2\n")
    commit(work, "three", g="g3\n")  # reverting "two" conflicts with this
    # The release replaced the tracked symlink with a file, and rewrote the executable script.
    (work / "config.ini").unlink()
    (work / "config.ini").write_text("built\n")
    (work / "run.sh").write_text("#!/bin/sh\necho built\n")
    repo = GitRepo(work, "main")
    assert repo.record_release_writes() == ["config.ini", "run.sh"]
    sink = Lines()
    with pytest.raises(GitError, match="conflicts"):
        repo.revert([two], sink=sink)
    assert any("wrote back what the release commands had written" in text for _, text in sink), list(sink)
    assert outside.read_text() == "the server's own config\n", "written through the symlink, outside the checkout"
    assert not (work / "config.ini").is_symlink() and (work / "config.ini").read_text() == "built\n"
    assert (work / "run.sh").read_text() == "#!/bin/sh\necho built\n"
    assert (work / "run.sh").stat().st_mode & 0o777 == 0o755
    assert repo.dirty().own == ["config.ini", "run.sh"]


def test_the_put_back_names_each_files_blob_so_an_edit_made_while_the_release_ran_can_be_recovered(work):
    # A person editing during the release commands cannot be told from them: the content must stay recoverable.
    sha = commit(work, "two", g="g2\n")
    (work / "f").write_text("a hot-fix typed while the build ran\n")
    repo = GitRepo(work, "main")
    repo.record_release_writes()
    sink = Lines()
    repo.revert([sha], sink=sink)
    (line,) = [text for _, text in sink if text.startswith("putting back what the release commands wrote")]
    blob = line.split("f (git blob ")[1][:12]
    assert git(work, "cat-file", "-p", blob) == "a hot-fix typed while the build ran"


def test_a_checkout_whose_app_is_a_subfolder_records_real_digests_and_refuses_a_later_edit(work):
    # repo.path may be the application's folder inside a larger repository: git names files from the top.
    (work / "web").mkdir()
    commit(work, "web", **{"web/app.css": "plain\n"})
    two = commit(work, "two", g="g2\n")
    three = commit(work, "three", g="g3\n")  # reverting "two" conflicts with this
    repo = GitRepo(work / "web", "main")
    (work / "web" / "app.css").write_text("built\n")
    assert repo.record_release_writes() == ["web/app.css"]
    assert repo.release_writes() == {"web/app.css": git(work, "hash-object", "web/app.css")}
    (work / "web" / "app.css").write_text("built\nhot-fix by hand\n")
    assert repo.dirty().foreign == ["web/app.css"], "a person's edit taken for the release's"
    with pytest.raises(GitError, match=r"uncommitted changes to web/app\.css — commit or discard"):
        repo.revert([three])
    (work / "web" / "app.css").write_text("built\n")
    sink = Lines()
    with pytest.raises(GitError, match="conflicts"):
        repo.revert([two], sink=sink)
    assert (work / "web" / "app.css").read_text() == "built\n"  # written back after the failed revert
    repo.revert([three], sink=sink)
    assert (work / "web" / "app.css").read_text() == "plain\n" and status(work) == ""
