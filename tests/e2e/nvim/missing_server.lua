-- A server command that is not an executable: one clear error naming it and the setting, once,
-- and the buffer is left without a client.
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":h") .. "/helpers.lua")

H.run(function()
  local promptrail = require("promptrail")
  promptrail.setup({ cmd = { H.config.missing, "serve" } })
  vim.cmd("edit " .. vim.fn.fnameescape(H.config.file))
  vim.cmd("edit " .. vim.fn.fnameescape(H.config.other_file))
  vim.wait(300)
  H.result.clients = #promptrail._compat.clients(nil)
end)
