"""Strings that break out of HTML, attributes or scripts when a page mishandles them."""

HOSTILE_HTML = "<img src=x onerror=window.__xss=1>"
HOSTILE_QUOTES = "\"'><script>window.__xss=2</script>"
HOSTILE_TITLE = 'Acme </script><script>window.__xss=3</script> "Ops"'
HOSTILE_NAME = "evil</script><script>window.__xss=4</script>"
