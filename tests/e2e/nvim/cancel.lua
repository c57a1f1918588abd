-- :PromptrailCancel while a (slowly replayed) run is going: the run ends `cancelled`, the log
-- buffer closes its section with that outcome, and nothing is committed.
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":h") .. "/helpers.lua")

H.run(function()
  local promptrail = require("promptrail")
  promptrail.setup({ cmd = H.config.server, agent = "replay", transcript = H.config.transcript,
                     replay_delay = 1.0, open_log = false })
  vim.cmd("edit " .. vim.fn.fnameescape(H.config.file))
  vim.cmd("PromptrailRun " .. H.config.prompt)
  H.wait(15000, function()
    local run = promptrail.state.last_run and promptrail.state.runs[promptrail.state.last_run]
    return run ~= nil and #run.entries > 0
  end, "the run's first log entries")
  H.result.statusline_while_running = promptrail.statusline()
  vim.cmd("PromptrailCancel")
  H.wait(15000, function()
    return promptrail.state.runs[promptrail.state.last_run].final
  end, "the run's final status")
  local run = promptrail.state.runs[promptrail.state.last_run]
  H.result.run = { id = run.id, status = run.status, commit = run.commit or vim.NIL }
  H.result.statusline_after = promptrail.statusline()
  H.result.log_lines = H.buffer_lines(vim.fn.bufnr("promptrail://log"))
  H.result.log_windows = #vim.fn.win_findbuf(vim.fn.bufnr("promptrail://log"))
end)
