<?php
// The response ends at fastcgi_finish_request(); the script goes on and
// leaves a mark once the test has seen the response (its own mark).
header("X-Finish: 1");
echo "finished";
$r = fastcgi_finish_request();
echo "dropped";
$seen = $_GET["seen"];
for ($i = 0; $i < 600 && !file_exists($seen); $i++) usleep(50000);
file_put_contents($_GET["after"], $r ? "true" : "false");
