<?php
// Writes until the client is gone; the shutdown function leaves a mark
// saying whether PHP saw the abort.
$mark = $_GET["mark"];
register_shutdown_function(function () use ($mark) {
    file_put_contents($mark, connection_aborted() ? "aborted" : "done");
});
while (ob_get_level() > 0) ob_end_flush();
for ($i = 0; $i < 3000; $i++) {
    echo str_repeat("x", 8192), "\n";
    flush();
    usleep(10000);
}
