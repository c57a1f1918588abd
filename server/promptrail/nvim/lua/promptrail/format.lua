-- The text promptrail shows in Neovim: log lines, run headers and footers, the run summary of
-- :PromptrailShow. Pure functions of the server's JSON (no editor state), matching the CLI's
-- `promptrail log` / `promptrail show` and the server's own labels (queries.format_cost and
-- format_tokens), so a lens, the log and the terminal agree.

local M = {}

local KIND_WIDTH = 11

local function is_null(value)
  return value == nil or value == vim.NIL
end

--- `$0.0042`, `$0.033`, `$12.50`; an unknown cost is "cost unknown", never `$0`.
function M.cost(value)
  if is_null(value) or type(value) ~= "number" or value ~= value then
    return "cost unknown"
  end
  if value < 0.01 then
    return string.format("$%.4f", value)
  end
  if value < 10 then
    return string.format("$%.3f", value)
  end
  local whole, fraction = string.format("%.2f", value):match("^(%d+)%.(%d+)$")
  return "$" .. M.thousands(whole) .. "." .. fraction
end

function M.total_tokens(tokens)
  if is_null(tokens) or type(tokens) ~= "table" then
    return 0
  end
  local total = 0
  for _, key in ipairs({ "input", "output", "cache_read", "cache_write" }) do
    local count = tokens[key]
    if type(count) == "number" then
      total = total + count
    end
  end
  return total
end

--- `340 tok`, `18.3k tok`, `1.2M tok` (all four kinds counted, as the lens does).
function M.tokens(tokens)
  local total = M.total_tokens(tokens)
  if total >= 1000000 then
    return string.format("%.1fM tok", total / 1000000)
  end
  if total >= 1000 then
    return string.format("%.1fk tok", total / 1000)
  end
  return string.format("%d tok", total)
end

function M.short_sha(sha)
  return is_null(sha) and "" or tostring(sha):sub(1, 12)
end

--- The first non-empty line, cut to `width` characters.
function M.one_line(text, width)
  width = width or 80
  local line = ""
  for part in (is_null(text) and "" or tostring(text)):gmatch("[^\r\n]+") do
    part = vim.trim(part)
    if part ~= "" then
      line = part
      break
    end
  end
  if vim.fn.strchars(line) <= width then
    return line
  end
  return vim.fn.strcharpart(line, 0, width - 1) .. "…"
end

--- `HH:MM:SS.mmm` of the server's ISO timestamp (UTC, as `promptrail log` prints it).
function M.time(ts)
  local clock = type(ts) == "string" and ts:match("T(%d%d:%d%d:%d%d%.?%d*)")
  if not clock then
    return tostring(ts or "")
  end
  return clock .. string.rep(" ", 12 - #clock)
end

local function split_lines(text)
  text = (is_null(text) and "" or tostring(text)):gsub("\r\n", "\n"):gsub("\n+$", "")
  return vim.split(text, "\n", { plain = true })
end

--- One log entry `{seq, ts, kind, text}` as buffer lines: time, kind, then the text, its further
--- lines indented under the first. `prefix` (a short run id) tells concurrent runs apart.
function M.entry_lines(entry, prefix)
  local kind = tostring(entry.kind or "")
  local head = (prefix and ("[" .. prefix .. "] ") or "") .. M.time(entry.ts) .. " "
    .. kind .. string.rep(" ", math.max(KIND_WIDTH - #kind, 0)) .. " "
  local indent = string.rep(" ", vim.fn.strdisplaywidth(head))
  local lines = {}
  for index, line in ipairs(split_lines(entry.text)) do
    lines[#lines + 1] = ((index == 1) and head or indent) .. line:gsub("%s+$", "")
  end
  return lines
end

--- The non-empty ones of its arguments (nil holes included), joined with " · ".
local function join(...)
  local kept = {}
  for index = 1, select("#", ...) do
    local part = select(index, ...)
    if not is_null(part) and part ~= "" and part ~= false then
      kept[#kept + 1] = tostring(part)
    end
  end
  return table.concat(kept, " · ")
end

--- The line that opens a run's section of the log: `━━━ promptrail run ID · prompt · agent ━━━`.
function M.header(run)
  local how = join(run.agent, run.model, run.mode and (run.mode .. " mode") or nil)
  return "━━━ " .. join("promptrail run " .. run.id, M.one_line(run.prompt, 80), how) .. " ━━━"
end

--- A non-final status change (`running`, `committing`...).
function M.status_line(params, prefix)
  return (prefix and ("[" .. prefix .. "] ") or "") .. "── " .. tostring(params.status)
end

--- `2 CLAUDE.md violations (1 error, 1 warning)`; "" when there are none.
function M.violations(counts)
  if is_null(counts) or type(counts) ~= "table" or not counts.total or counts.total == 0 then
    return ""
  end
  local kinds = {}
  for _, kind in ipairs({ "error", "warning", "info", "hint" }) do
    local count = counts[kind]
    if type(count) == "number" and count > 0 then
      kinds[#kinds + 1] = string.format("%d %s%s", count, kind, count == 1 and "" or "s")
    end
  end
  local text = string.format("%d CLAUDE.md violation%s", counts.total, counts.total == 1 and "" or "s")
  return #kinds > 0 and (text .. " (" .. table.concat(kinds, ", ") .. ")") or text
end

--- The outcome of a final `promptrail/runStatus`: `run ID succeeded · commit … · $0.033 · …`.
function M.outcome(params)
  local gate = type(params.gate) == "table" and params.gate.status or nil
  return join(
    "run " .. params.runId .. " " .. tostring(params.status),
    not is_null(params.commit) and ("commit " .. M.short_sha(params.commit)) or nil,
    M.cost(params.costUsd),
    M.total_tokens(params.tokens) > 0 and M.tokens(params.tokens) or nil,
    not is_null(gate) and ("gate: " .. gate) or nil,
    M.violations(params.violations),
    not is_null(params.error) and M.one_line(params.error, 200) or nil
  )
end

--- The line that closes a run's section of the log.
function M.footer(params)
  return "━━━ " .. M.outcome(params) .. " ━━━"
end

--- `16,159`, as the CLI writes counts.
function M.thousands(count)
  local digits = tostring(math.floor(tonumber(count) or 0))
  return (digits:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", ""))
end

local function field(name, value)
  return string.format("%-10s %s", name, value)
end

local function actor(value)
  if type(value) ~= "table" then
    return is_null(value) and "" or tostring(value)
  end
  if not is_null(value.name) and not is_null(value.email) then
    return string.format("%s <%s>", value.name, value.email)
  end
  return tostring(is_null(value.email) and (value.name or "") or value.email)
end

--- `promptrail.showRun`'s JSON (the same as `promptrail show --json`) as the lines of
--- :PromptrailShow, followed by the log entries this editor received for the run.
function M.show_lines(run, entries)
  local lines = { field("run", run.id), field("prompt", M.one_line(run.prompt, 200)), field("status", run.status) }
  local function add(name, value)
    if not is_null(value) and value ~= "" then
      lines[#lines + 1] = field(name, value)
    end
  end
  add("actor", actor(run.actor))
  add("agent", join(run.agent, not is_null(run.model) and ("model " .. run.model) or nil))
  add("mode", run.mode)
  add("base", M.short_sha(run.base_sha))
  if not is_null(run.commit_sha) then
    add("commit", run.commit_sha .. (is_null(run.branch) and "" or (" on " .. run.branch)))
  end
  local tokens = run.tokens
  if type(tokens) == "table" then
    add("tokens", string.format("%s in · %s out · %s cache read · %s cache write", M.thousands(tokens.input),
      M.thousands(tokens.output), M.thousands(tokens.cache_read), M.thousands(tokens.cache_write)))
  end
  add("cost", M.cost(run.cost_usd) .. (is_null(run.cost_source) and "" or (" (" .. run.cost_source .. ")")))
  if type(run.gate) == "table" then
    local blockers = type(run.gate.merge_blockers) == "table" and run.gate.merge_blockers or {}
    add("gate", join(run.gate.label or run.gate.status,
      #blockers > 0 and ("cannot merge: " .. table.concat(blockers, "; ")) or nil))
  end
  add("started", run.started_at)
  add("ended", run.ended_at)
  add("error", not is_null(run.error) and M.one_line(run.error, 200) or nil)
  local violations = type(run.violations) == "table" and run.violations or {}
  add("CLAUDE.md", #violations == 0 and "no violations" or string.format("%d violation%s", #violations,
    #violations == 1 and "" or "s"))
  for _, violation in ipairs(violations) do
    lines[#lines + 1] = string.format("  %s %s:%s %s [%s]", tostring(violation.severity or ""),
      tostring(violation.path or ""), tostring(violation.line or ""), M.one_line(violation.message, 120),
      tostring(violation.rule_id or ""))
  end
  local files = type(run.files) == "table" and run.files or {}
  if #files > 0 then
    lines[#lines + 1] = "files"
    for _, file in ipairs(files) do
      lines[#lines + 1] = string.format("  %-9s +%-4d −%-4d %s", tostring(file.status or ""), file.additions or 0,
        file.deletions or 0, tostring(file.path or ""))
    end
  end
  if entries and #entries > 0 then
    lines[#lines + 1] = "log"
    for _, entry in ipairs(entries) do
      for _, line in ipairs(M.entry_lines(entry)) do
        lines[#lines + 1] = "  " .. line
      end
    end
  end
  return lines
end

return M
