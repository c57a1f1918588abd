"""CLAUDE.md rules: machine-checkable rules in ```promptrail blocks of every CLAUDE.md, checked
in the editor (diagnostics), on every run (against the base commit's rules) and from the
terminal (``promptrail check``).

``parse`` reads rule blocks (never raising), ``rules`` defines and validates a rule, ``check``
checks text and changes and finds a tree's rules, ``run_check`` is the one call the orchestrator
makes after a run's commit, ``review`` asks a model to judge a run's diff against CLAUDE.md's prose
(``promptrail review``; imported on its own, never from here).
"""

from __future__ import annotations

from promptrail.standards.check import (CheckReport, RunCheck, Violation, check_changes, check_commit,
                                        check_paths, check_text, commit_rule_set, diagnose_claude_md,
                                        diagnose_document, policy_files, severity_counts, worktree_rule_set)
from promptrail.standards.parse import ParsedFile, RuleSet, find_rule_blocks, parse_claude_md, rule_set_from_texts
from promptrail.standards.rules import KINDS, SEVERITIES, Rule, RuleProblem

__all__ = ["CheckReport", "KINDS", "ParsedFile", "Rule", "RuleProblem", "RuleSet", "RunCheck", "SEVERITIES",
           "Violation", "check_changes", "check_commit", "check_paths", "check_text", "commit_rule_set",
           "diagnose_claude_md", "diagnose_document", "find_rule_blocks", "parse_claude_md", "policy_files",
           "rule_set_from_texts", "severity_counts", "worktree_rule_set"]
