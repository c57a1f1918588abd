-- :PromptrailRun with the replay agent: the run's log streams into the promptrail://log scratch
-- buffer (a header line, the agent's lines, each status, the outcome), the final status is echoed,
-- and :PromptrailShow then shows the run.
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":h") .. "/helpers.lua")

H.run(function()
  local promptrail = require("promptrail")
  promptrail.setup({ cmd = H.config.server, agent = "replay", transcript = H.config.transcript,
                     replay_delay = H.config.replay_delay })
  vim.cmd("edit " .. vim.fn.fnameescape(H.config.file))
  local bufnr = vim.api.nvim_get_current_buf()
  H.wait(15000, function()
    return #promptrail._compat.clients(bufnr) > 0
  end, "the promptrail client to attach")

  vim.cmd("PromptrailRun " .. H.config.prompt)
  H.wait(20000, function()
    local run = promptrail.state.last_run and promptrail.state.runs[promptrail.state.last_run]
    return run ~= nil and run.final
  end, "the run's final status")
  local run = promptrail.state.runs[promptrail.state.last_run]
  H.result.run = { id = run.id, status = run.status, commit = run.commit, entries = #run.entries }

  local log = vim.fn.bufnr("promptrail://log")
  H.check(log ~= -1, "no promptrail://log buffer")
  H.result.log_lines = H.buffer_lines(log)
  H.result.log_windows = #vim.fn.win_findbuf(log)
  H.result.log_buftype = vim.bo[log].buftype

  vim.cmd("PromptrailShow")
  H.wait(10000, function()
    return vim.fn.bufnr("promptrail://run/" .. run.id) ~= -1
  end, "the :PromptrailShow buffer")
  H.result.show_lines = H.buffer_lines(vim.fn.bufnr("promptrail://run/" .. run.id))
end)
