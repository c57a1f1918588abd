-- The README's "without the plugin" snippet is the whole init.lua (the test passes it as `-u`):
-- opening a file in a repository attaches `promptrail serve`, whose lenses and CLAUDE.md
-- diagnostics then show.
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":h") .. "/helpers.lua")

H.run(function()
  vim.cmd("edit " .. vim.fn.fnameescape(H.config.file))
  local bufnr = vim.api.nvim_get_current_buf()
  local function clients()
    return (vim.lsp.get_clients or vim.lsp.get_active_clients)({ bufnr = bufnr })
  end
  H.wait(15000, function()
    return #clients() > 0
  end, "the snippet's client to attach")
  H.result.client = { name = clients()[1].name, root = clients()[1].config.root_dir }
  H.wait(15000, function()
    return #H.lens_text(bufnr) > 0
  end, "code lenses drawn")
  H.result.shown = H.lens_text(bufnr)
  H.wait(15000, function()
    return #vim.diagnostic.get(bufnr) > 0
  end, "a CLAUDE.md diagnostic")
  local diagnostic = vim.diagnostic.get(bufnr)[1]
  H.result.diagnostic = { lnum = diagnostic.lnum, source = diagnostic.source, message = diagnostic.message }
end)
