"""Everything promptrail does with git: the repository and identity (``repo``), isolated
worktrees (``worktree``), turning a run's changes into a commit (``commit``), and mapping
blamed lines back to runs (``attribution``)."""
