<?php
header("Content-Type: application/json");
echo json_encode(["server" => $_SERVER, "sapi" => PHP_SAPI, "cwd" => getcwd()]);
