-- Shared by the headless Neovim test scripts (tests/e2e/test_neovim.py runs them): the test's
-- configuration from $PROMPTRAIL_TEST (JSON), waiting, what the editor shows, and the verdict:
-- the result table goes to the JSON file the test names, and Neovim exits 0 (`qa!`) when the
-- script passed, 1 (`cq`) when it failed or raised.

local H = {}

H.config = vim.json.decode(os.getenv("PROMPTRAIL_TEST"))
H.result = { notifications = {} }

-- Record what the plugin tells the user instead of printing it to a terminal nobody sees.
vim.notify = function(message, level)
  table.insert(H.result.notifications, { message = message, level = level })
end

function H.wait(timeout_ms, condition, what)
  if not vim.wait(timeout_ms, condition, 20) then
    error(string.format("timed out after %d ms waiting for %s", timeout_ms, what), 2)
  end
end

function H.check(condition, message)
  if not condition then
    error(message, 2)
  end
end

--- The lens titles of `bufnr` as the client holds them: { {line = 0-based, title = ...}, ... }.
function H.lenses(bufnr)
  local found = {}
  for _, lens in ipairs(vim.lsp.codelens.get(bufnr) or {}) do
    found[#found + 1] = { line = lens.range.start.line, title = lens.command and lens.command.title or vim.NIL }
  end
  -- By line; on one line the run's own lens (✦) first, then the actions by title: a stable order.
  local function key(lens)
    local title = type(lens.title) == "string" and lens.title or ""
    return string.format("%08d %d %s", lens.line, title:find("✦", 1, true) == 1 and 0 or 1, title)
  end
  table.sort(found, function(a, b)
    return key(a) < key(b)
  end)
  return found
end

--- The run's own lens (the one titled ✦ …) among `lenses`, or nil.
function H.run_lens(lenses)
  for _, lens in ipairs(lenses) do
    if type(lens.title) == "string" and lens.title:find("✦", 1, true) == 1 then
      return lens
    end
  end
end

function H.resolved(bufnr)
  local lenses = H.lenses(bufnr)
  for _, lens in ipairs(lenses) do
    if lens.title == vim.NIL then
      return false
    end
  end
  return #lenses > 0
end

--- The virtual text Neovim draws for code lenses in `bufnr` (what the user sees), by line.
function H.lens_text(bufnr)
  local shown = {}
  for name, ns in pairs(vim.api.nvim_get_namespaces()) do
    if name:find("codelens") then
      for _, mark in ipairs(vim.api.nvim_buf_get_extmarks(bufnr, ns, 0, -1, { details = true })) do
        local chunks = {}
        local details = mark[4] or {}
        for _, chunk in ipairs(details.virt_text or {}) do
          chunks[#chunks + 1] = chunk[1]
        end
        for _, line in ipairs(details.virt_lines or {}) do
          for _, chunk in ipairs(line) do
            chunks[#chunks + 1] = chunk[1]
          end
        end
        if #chunks > 0 then
          shown[#shown + 1] = { line = mark[2], text = table.concat(chunks) }
        end
      end
    end
  end
  return shown
end

function H.buffer_lines(bufnr)
  return vim.api.nvim_buf_get_lines(bufnr, 0, -1, false)
end

local function finish(ok)
  H.result.ok = ok
  H.result.nvim = tostring(vim.version().major) .. "." .. tostring(vim.version().minor)
  vim.fn.writefile({ vim.json.encode(H.result) }, H.config.result)
  vim.cmd(ok and "qa!" or "cq")
end

--- Run the test body; any error fails the test with its traceback in the result.
function H.run(body)
  local ok, err = xpcall(body, debug.traceback)
  if not ok then
    H.result.error = err
  end
  finish(ok)
end

return H
