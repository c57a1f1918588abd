-- Attach to a file with an AI run's lines; its lens (resolved lazily) names the prompt and cost.
-- Then the server's workspace/codeLens/refresh (after an approval) and a save both refresh it.
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":h") .. "/helpers.lua")

H.run(function()
  local promptrail = require("promptrail")
  promptrail.setup({ cmd = H.config.server })
  vim.cmd("edit " .. vim.fn.fnameescape(H.config.file))
  local bufnr = vim.api.nvim_get_current_buf()

  H.wait(15000, function()
    return #promptrail._compat.clients(bufnr) > 0
  end, "the promptrail client to attach")
  local client = promptrail._compat.clients(bufnr)[1]
  H.result.client = { name = client.name, root = client.config.root_dir }

  H.wait(15000, function()
    return H.resolved(bufnr) and #H.lens_text(bufnr) > 0
  end, "resolved code lenses on open")
  H.result.on_open = { lenses = H.lenses(bufnr), shown = H.lens_text(bufnr) }

  -- Running the run's lens (:lua vim.lsp.codelens.run(), one of several on the line) shows the run.
  vim.ui.select = function(items, opts, on_choice)
    for _, item in ipairs(items) do
      if opts.format_item(item):find("✦", 1, true) then
        return on_choice(item)
      end
    end
    on_choice(nil)
  end
  vim.api.nvim_win_set_cursor(0, { H.result.on_open.lenses[1].line + 1, 0 })
  vim.lsp.codelens.run()
  local show = "promptrail://run/" .. H.config.run_id
  H.wait(10000, function()
    return vim.fn.bufnr(show) ~= -1
  end, "the run shown by its lens")
  H.result.show_lines = H.buffer_lines(vim.fn.bufnr(show))
  vim.cmd("close")
  H.check(vim.api.nvim_get_current_buf() == bufnr, "back in the file after closing the run")

  -- The server answers an approval with workspace/codeLens/refresh: the title shows the new gate.
  promptrail.execute("promptrail.gate.approve", { runId = H.config.run_id }, function(gate)
    H.result.approve = gate
  end)
  H.wait(15000, function()
    local lens = H.run_lens(H.lenses(bufnr))
    return lens ~= nil and lens.title:find("approved", 1, true) ~= nil
  end, "the lens to show the approval after workspace/codeLens/refresh")
  H.result.after_refresh = { lenses = H.lenses(bufnr), shown = H.lens_text(bufnr) }

  -- A line added above the AI lines and saved: the lenses move down with them.
  vim.api.nvim_buf_set_lines(bufnr, 0, 0, false, { "# a human comment" })
  vim.cmd("silent write")
  -- The run's lens moves down with its lines; the actions stay at the top of the file.
  H.wait(15000, function()
    local lens = H.run_lens(H.lenses(bufnr))
    return H.resolved(bufnr) and lens ~= nil and lens.line == H.run_lens(H.result.on_open.lenses).line + 1
  end, "the run's lens to move down after a save")
  H.result.after_save = { lenses = H.lenses(bufnr), shown = H.lens_text(bufnr) }
end)
