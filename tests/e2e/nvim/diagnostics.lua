-- A file that breaks a CLAUDE.md rule: the server's diagnostic reaches vim.diagnostic with source
-- "CLAUDE.md" and the rule id as its code.
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":h") .. "/helpers.lua")

local function claude_md(bufnr)
  local found = {}
  for _, diagnostic in ipairs(vim.diagnostic.get(bufnr)) do
    if diagnostic.source == "CLAUDE.md" then
      found[#found + 1] = { lnum = diagnostic.lnum, col = diagnostic.col, end_col = diagnostic.end_col,
                            severity = diagnostic.severity, message = diagnostic.message,
                            code = diagnostic.code or (diagnostic.user_data and diagnostic.user_data.lsp
                                                       and diagnostic.user_data.lsp.code) or vim.NIL }
    end
  end
  return found
end

H.run(function()
  local promptrail = require("promptrail")
  promptrail.setup({ cmd = H.config.server })
  vim.cmd("edit " .. vim.fn.fnameescape(H.config.file))
  local bufnr = vim.api.nvim_get_current_buf()
  H.wait(15000, function()
    return #promptrail._compat.clients(bufnr) > 0
  end, "the promptrail client to attach")
  H.wait(15000, function()
    return #claude_md(bufnr) > 0
  end, "a CLAUDE.md diagnostic")
  H.result.diagnostics = claude_md(bufnr)
  H.result.error_severity = vim.diagnostic.severity.ERROR
end)
